"""The accuracy-drift severity tiers: the values of the ``severity`` label, lowest first.

``stats.significance.drift_severity`` picks the tier; the catalogue writes one series per tier
(``mlmon_accuracy_drift_severity``); retraining, history and the status page read them back in
this order.
"""

from __future__ import annotations

LOW = "low"
HIGH = "high"
CRITICAL = "critical"
SEVERITIES: tuple[str, ...] = (LOW, HIGH, CRITICAL)
