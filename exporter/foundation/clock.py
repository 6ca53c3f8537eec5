"""The clock type every time-dependent part takes, so tests inject a fake one.

A ``Clock`` returns seconds: ``time.time`` for wall time (what records and windows are judged
against), ``time.perf_counter`` where only durations matter. Tests pass ``tests.helpers.FakeClock``.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
