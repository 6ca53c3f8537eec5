"""Pure model-quality maths: no Prometheus, no I/O, numpy only at runtime.

Every function takes plain numbers or numpy arrays (window aggregates such as confusion
matrices, sorted samples, bin counts) and returns plain floats, so the pipeline can compute a
snapshot in one pass and the tests can compare each result with its reference implementation
(scikit-learn, scipy, river), which are test-only dependencies.
"""

from exporter.stats.change import DDM, DRIFT, STABLE, WARNING, PageHinkley, detector_from_dict
from exporter.stats.classification import ClassificationMetrics, classification_metrics, confusion_add
from exporter.stats.confidence import ConfidenceStats, confidence_stats
from exporter.stats.drift import (
    bin_counts,
    chi2_p_value,
    js_distance,
    psi,
    quantile_edges,
)
from exporter.stats.estimation import ece_from_bins
from exporter.stats.significance import (
    binomial_drop_p_value,
    drift_severity,
    two_proportion_drop_p_value,
    wilson_interval,
)

__all__ = [
    "DDM",
    "DRIFT",
    "STABLE",
    "WARNING",
    "ClassificationMetrics",
    "ConfidenceStats",
    "PageHinkley",
    "bin_counts",
    "binomial_drop_p_value",
    "chi2_p_value",
    "classification_metrics",
    "confidence_stats",
    "confusion_add",
    "detector_from_dict",
    "drift_severity",
    "ece_from_bins",
    "js_distance",
    "psi",
    "quantile_edges",
    "two_proportion_drop_p_value",
    "wilson_interval",
]
