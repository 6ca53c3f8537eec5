"""The Report a cycle publishes (``exporter.core.reporting``): plain immutable values, detached from
the state that goes on. (The numbers themselves are pinned through /metrics by the golden file.)"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from exporter.report.model import Report
from tests.four_versions import T0, pipeline
from tests.helpers import FakeClock


def _leaves(value: Any, path: str = "report") -> list[tuple[str, Any]]:
    if dataclasses.is_dataclass(value):
        return [leaf for f in dataclasses.fields(value) for leaf in _leaves(getattr(value, f.name), f"{path}.{f.name}")]
    if isinstance(value, tuple):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def test_a_report_holds_only_plain_immutable_values() -> None:
    report = pipeline(FakeClock(T0), None).run_cycle()
    leaves = _leaves(report)
    assert len(leaves) > 500
    wrong = [(p, type(v).__name__) for p, v in leaves if type(v) not in (int, float, str, bool, type(None))]
    assert not wrong, wrong[:10]  # no numpy scalar or array, no list or dict
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ready = False  # type: ignore[misc]


def test_a_published_report_does_not_change_with_the_pipeline() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, None)
    first = p.run_cycle()
    before = _leaves(first)
    v1 = first.version("fraud", "1")
    assert v1 is not None and v1.correct_total == 160 and v1.labeled_predictions == 200
    window = v1.window("1h")
    assert window is not None and window.accuracy == pytest.approx(0.8) and window.labeled == 200
    assert window.class_scores(v1.classes, "1") == (pytest.approx(90 / 120), pytest.approx(0.9),
                                                    pytest.approx(2 * 0.75 * 0.9 / 1.65))
    clock.t += 2 * 86400  # every window empties
    second: Report = p.run_cycle()
    w2 = second.version("fraud", "1")
    assert w2 is not None and w2.windows[0].labeled == 0 and math.isnan(w2.windows[0].accuracy)
    after = _leaves(first)
    assert len(after) == len(before)
    assert all(a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
               for (_, a), (_, b) in zip(after, before, strict=True))
