"""The status page on ``/``: every model version's health, for an ML engineer without Grafana.

Two halves, so that serving the page never touches the pipeline's mutable state:

* ``StatusTracker.update`` runs on the pipeline thread once per cycle. It reads the Report the
  cycle just published (typed values, the same numbers ``/metrics`` serves; never the rendered
  text nor metric names), adds one point per version and window to the bounded recent-accuracy history
  (``exporter.core.recent``) and freezes everything into an immutable ``StatusView``.
* ``StatusPage.html`` runs on an HTTP thread. It renders the last published view (an atomic
  reference read) into one self-contained HTML page: inline CSS and SVG sparklines, no script,
  no external font, CDN or request, and a meta refresh so it follows the exporter by itself.

Health at a glance, per version, from the exporter's own judgements (the alerts use the same):
``drifting (<tier>)`` when drift is detected in a window (``mlmon_accuracy_drift_detected``;
worst tier shown), ``accuracy below threshold`` when a window with at least ``min_samples`` labelled
predictions is below ``thresholds.accuracy``, ``no labels lately`` when the shortest window
holds no labelled prediction, and ``ok`` otherwise.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.config import Config
from exporter.core.recent import DEFAULT_POINTS, RecentHistory, sample_step
from exporter.foundation.severities import SEVERITIES
from exporter.report.model import Report, VersionReport

log = logging.getLogger(__name__)
LINKS = (("/metrics", "/metrics"), ("/-/healthy", "/-/healthy"), ("/-/ready", "/-/ready"))

# --------------------------------------------------------------------------------------------
# The view: immutable, built once per cycle
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureFlag:
    feature: str
    detected: float  # 1.0 drifted, 0.0 not, NaN unknown (no reference or no values yet)


@dataclass(frozen=True)
class WindowStatus:
    window: str
    seconds: float
    predictions: int
    labeled: int
    accuracy: float
    lower: float  # 95% Wilson interval
    upper: float
    drop: float
    drift_detected: bool
    severity: str
    coverage: float
    features: tuple[FeatureFlag, ...]
    history: tuple[tuple[float, float], ...]  # (time, accuracy), oldest first


@dataclass(frozen=True)
class Health:
    kind: str  # ok | drifting | below_threshold | no_labels
    text: str


@dataclass(frozen=True)
class VersionStatus:
    model: str
    version: str
    task: str
    baseline: float
    accuracy_threshold: float
    min_samples: int
    newest_label: float | None  # when a label was last joined, as seen by this process
    windows: tuple[WindowStatus, ...]
    health: tuple[Health, ...]  # worst first; (ok,) when nothing is wrong


@dataclass(frozen=True)
class StatusView:
    created: float
    ready: bool
    refresh_seconds: int
    versions: tuple[VersionStatus, ...]


EMPTY_VIEW = StatusView(0.0, False, 5, ())


def health_of(windows: Sequence[WindowStatus], threshold: float, min_samples: int) -> tuple[Health, ...]:
    """The version's health conditions, worst first."""
    out: list[Health] = []
    drifting = [w.severity for w in windows if w.drift_detected]
    if drifting:
        tier = max(drifting, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else -1)
        out.append(Health("drifting", f"drifting ({tier})"))
    if any(w.labeled >= min_samples and w.accuracy < threshold for w in windows):
        out.append(Health("below_threshold", "accuracy below threshold"))
    shortest = min(windows, key=lambda w: w.seconds, default=None)
    if shortest is not None and shortest.labeled == 0:
        out.append(Health("no_labels", "no labels lately"))
    return tuple(out) or (Health("ok", "ok"),)


class StatusTracker:
    """Pipeline-thread side: the recent history and the per-version newest-label times.

    Both are bounded by the versions in the latest snapshot: entries of versions that left it
    (idle expiry, reload) are dropped each cycle.
    """

    def __init__(self, points: int = DEFAULT_POINTS) -> None:
        self.history = RecentHistory(points)
        self._labels: dict[tuple[str, str], tuple[float, float | None]] = {}  # key -> (total, newest)
        self._view = EMPTY_VIEW
        self._updates = 0

    @property
    def view(self) -> StatusView:
        return self._view

    def update(self, report: Report, config: Config, now: float) -> StatusView:
        """Build and publish the view of ``report`` (pipeline thread, once per cycle)."""
        poll = config.global_.poll_interval
        keys: list[tuple[str, str, str]] = []
        versions: list[VersionStatus] = []
        for v in report.versions:
            newest = self._newest_label(v.model, v.version, float(v.labeled_predictions), now)
            windows = sorted((self._window(v, i, now, poll, keys) for i in range(len(v.windows))),
                             key=lambda w: w.seconds)
            t = v.thresholds
            versions.append(VersionStatus(
                model=v.model, version=v.version, task=v.task, baseline=v.baseline_accuracy,
                accuracy_threshold=t.accuracy, min_samples=t.min_samples, newest_label=newest,
                windows=tuple(windows), health=health_of(windows, t.accuracy, t.min_samples),
            ))
        self._updates += 1
        self.history.retain(keys)
        present = {(v.model, v.version) for v in versions}
        for gone in [k for k in self._labels if k not in present]:
            del self._labels[gone]
        versions.sort(key=lambda v: (v.model, v.version))
        self._view = StatusView(now, report.ready, min(60, max(5, math.ceil(poll))), tuple(versions))
        return self._view

    def _window(self, v: VersionReport, i: int, now: float, poll: float,
                keys: list[tuple[str, str, str]]) -> WindowStatus:
        """One window's row; adds its accuracy to the recent history."""
        w = v.windows[i]
        key = (v.model, v.version, w.window)
        keys.append(key)
        self.history.observe(key, now, w.accuracy, sample_step(w.seconds, poll, self.history.points))
        drift = v.drift.windows[i] if i < len(v.drift.windows) else None
        return WindowStatus(
            window=w.window, seconds=w.seconds, predictions=w.predictions, labeled=w.labeled,
            accuracy=w.accuracy, lower=w.accuracy_lower, upper=w.accuracy_upper, drop=w.accuracy_drop,
            drift_detected=w.drift_detected, severity=w.severity, coverage=w.coverage,
            features=tuple(FeatureFlag(f.feature, f.detected) for f in drift.features) if drift else (),
            history=self.history.series(key),
        )

    def _newest_label(self, model: str, version: str, total: float, now: float) -> float | None:
        """When this version's joined-label counter last grew (None: not since this process started).

        The counters of versions present at the first update may come from a checkpoint, so
        their growth before that update is not "now"; a version first seen later starts at 0.
        """
        prev = self._labels.get((model, version))
        if prev is None and self._updates > 0:
            prev = (0.0, None)  # a version first seen after the first cycle: all its labels are new
        newest = None if prev is None else (now if total > prev[0] else prev[1])
        self._labels[(model, version)] = (total, newest)
        return newest


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
class StatusPage:
    """HTTP side: the page of the latest view, rendered once per view on first request."""

    def __init__(self, tracker: StatusTracker, telemetry_path: Callable[[], str] = lambda: "/metrics") -> None:
        self.tracker = tracker
        self.telemetry_path = telemetry_path  # --web.telemetry-path, read at render time
        self._lock = threading.Lock()
        self._cached: tuple[StatusView, bytes, tuple[tuple[str, str], ...]] | None = None

    def html(self) -> bytes:
        view = self.tracker.view
        links = _links(self.telemetry_path())
        cached = self._cached
        if cached is not None and cached[0] is view and cached[2] == links:
            return cached[1]
        with self._lock:  # concurrent first requests render once
            cached = self._cached
            if cached is None or cached[0] is not view or cached[2] != links:
                try:
                    cached = self._cached = (view, render_page(view, links), links)
                except Exception:  # a rendering bug must not cost the links: answer a minimal page
                    log.exception("status page rendering failed")
                    return FALLBACK
        return cached[1]


FALLBACK = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mlmon-exporter</title></head>"
            "<body><h1>mlmon-exporter</h1><p>The status page could not be rendered (see the exporter's log).</p>"
            + "".join(f'<p><a href="{h}">{t}</a></p>' for h, t in LINKS) + "</body></html>\n").encode()


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#9ecbff}header .meta{color:#c0c6d0;font-size:12px}
main{padding:16px 20px;display:grid;gap:14px}
section.version{background:#fff;border:1px solid #d8dce3;border-left:6px solid #2da44e;border-radius:6px;
padding:10px 14px}
section.version.drifting{border-left-color:#cf222e}section.version.below_threshold{border-left-color:#bc4c00}
section.version.no_labels{border-left-color:#8c959f}
h2{font-size:16px;margin:0 8px 6px 0;display:inline-block}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;margin-right:6px;font-size:12px;font-weight:600;
color:#fff}
.badge.ok{background:#2da44e}.badge.drifting{background:#cf222e}.badge.below_threshold{background:#bc4c00}
.badge.no_labels{background:#6e7781}
.facts{color:#57606a;font-size:12px;margin:2px 0 8px}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th:nth-child(1){width:6%}th:nth-child(2){width:18%}th:nth-child(3){width:11%}th:nth-child(4){width:13%}
th:nth-child(5){width:9%}th:nth-child(6){width:176px}th,td{text-align:left;padding:4px 10px 4px 0;vertical-align:middle}
th{font-size:11px;text-transform:uppercase;color:#57606a;border-bottom:1px solid #d8dce3}
td{border-bottom:1px solid #eef0f3}.num{font-variant-numeric:tabular-nums}
.ci{color:#57606a;font-size:12px}.bad{color:#cf222e;font-weight:600}
.chip{display:inline-block;border-radius:4px;padding:0 6px;margin:1px 3px 1px 0;font-size:12px;border:1px solid}
.chip.d1{background:#ffebe9;border-color:#cf222e;color:#a40e26}.chip.d0{background:#dafbe1;border-color:#2da44e;color:#116329}
.chip.dn{background:#f0f1f3;border-color:#c0c6d0;color:#57606a}
svg.spark{display:block}.empty{color:#57606a;padding:20px}
""".strip()


def _links(telemetry_path: str) -> tuple[tuple[str, str], ...]:
    return ((telemetry_path, telemetry_path), *LINKS[1:])


def render_page(view: StatusView, link_targets: tuple[tuple[str, str], ...] = LINKS) -> bytes:
    """The whole page: self-contained HTML5, no script, no external resource."""
    updated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(view.created)) if view.created else "not yet"
    links = " ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in link_targets)
    body = "".join(_version_html(v, view.created) for v in view.versions) or (
        '<p class="empty">No model version seen yet: waiting for the first predictions.</p>')
    counts = {k: sum(1 for v in view.versions if v.health[0].kind == k)
              for k in ("ok", "drifting", "below_threshold", "no_labels")}
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n) or "no versions"
    page = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="refresh" content="{view.refresh_seconds}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>mlmon-exporter status</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>mlmon-exporter</h1><span class=\"meta\">{len(view.versions)} model versions: "
        f"{html.escape(summary)} · updated {updated} · "
        f"{'ready' if view.ready else 'not ready'} · v{html.escape(__version__)}</span>"
        f"<nav>{links}</nav></header><main>{body}</main></body></html>\n"
    )
    return page.encode("utf-8")


def _version_html(v: VersionStatus, now: float) -> str:
    e = html.escape
    worst = v.health[0].kind
    badges = "".join(f'<span class="badge {h.kind}">{e(h.text)}</span>' for h in v.health)
    if v.newest_label is None:
        newest = "no label joined since the exporter started"
    else:
        newest = f"newest label {_age(now - v.newest_label)} ago"
    facts = (f"task {e(v.task)} · baseline {_pct(v.baseline)} · accuracy threshold {_pct(v.accuracy_threshold)}"
             f" · min samples {v.min_samples} · {newest}")
    rows = "".join(_window_row(v, w) for w in v.windows)
    return (
        f'<section class="version {worst}" data-model="{e(v.model, quote=True)}" '
        f'data-version="{e(v.version, quote=True)}" data-health="{e(" ".join(h.kind for h in v.health), quote=True)}">'
        f'<h2><span class="model">{e(v.model)}</span> / version <span class="mv">{e(v.version)}</span></h2>'
        f'<span class="health">{badges}</span><div class="facts">{facts}</div>'
        "<table><thead><tr><th>window</th><th>accuracy (95% CI)</th><th>vs baseline</th>"
        "<th>labelled / predictions</th><th>label coverage</th><th>recent accuracy</th>"
        f"<th>data drift</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _window_row(v: VersionStatus, w: WindowStatus) -> str:
    e = html.escape
    below = w.labeled >= v.min_samples and w.accuracy < v.accuracy_threshold
    acc_cls = "num bad" if below or w.drift_detected else "num"
    ci = f'<span class="ci">[{_pct(w.lower)} &ndash; {_pct(w.upper)}]</span>' if w.labeled else ""
    drop = "—" if math.isnan(w.drop) else f"{-w.drop * 100:+.1f} pts"
    if w.drift_detected:
        drop += f" ({e(w.severity)})"
    chips = "".join(
        f'<span class="chip {"dn" if math.isnan(f.detected) else "d1" if f.detected >= 1 else "d0"}" '
        f'title="{e(f.feature, quote=True)}: '
        f'{"unknown" if math.isnan(f.detected) else "drifted" if f.detected >= 1 else "no drift"}">'
        f"{e(f.feature)}</span>" for f in w.features) or '<span class="ci">not configured</span>'
    return (
        f'<tr data-window="{e(w.window, quote=True)}"><td>{e(w.window)}</td>'
        f'<td class="{acc_cls}">{_pct(w.accuracy)} {ci}</td>'
        f'<td class="num">{drop}</td><td class="num">{w.labeled} / {w.predictions}</td>'
        f'<td class="num">{_pct(w.coverage)}</td><td>{sparkline(w.history, v.baseline, v.accuracy_threshold)}</td>'
        f"<td>{chips}</td></tr>"
    )


def sparkline(points: Sequence[tuple[float, float]], baseline: float, threshold: float,
              width: int = 160, height: int = 34) -> str:
    """An inline SVG line of accuracy over time, with the baseline (dashed) and threshold
    (dotted) for reference; gaps where the accuracy was unknown (no labels)."""
    finite = [(t, a) for t, a in points if math.isfinite(a)]
    if len(finite) < 2:
        return '<span class="ci">collecting…</span>'
    refs = [x for x in (baseline, threshold) if math.isfinite(x)]
    values = [a for _, a in finite]
    lo = max(0.0, min([*values, *refs]) - 0.02)
    hi = min(1.0, max([*values, *refs]) + 0.02)
    if hi - lo < 0.05:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.025, mid + 0.025
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0

    def xy(t: float, a: float) -> str:
        return f"{(t - t0) / span * (width - 2) + 1:.1f},{(hi - a) / (hi - lo) * (height - 2) + 1:.1f}"

    segments: list[list[str]] = [[]]
    for t, a in points:
        if math.isfinite(a):
            segments[-1].append(xy(t, a))
        elif segments[-1]:
            segments.append([])
    lines = "".join(f'<polyline points="{" ".join(s)}" fill="none" stroke="#0969da" stroke-width="1.5"/>'
                    for s in segments if len(s) >= 2)
    dots = "".join(f'<circle cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}" r="1.2" fill="#0969da"/>'
                   for s in segments if len(s) == 1)
    ref_lines = ""
    for value, dash, colour in ((baseline, "4 3", "#6e7781"), (threshold, "1 3", "#bc4c00")):
        if math.isfinite(value) and lo <= value <= hi:
            y = (hi - value) / (hi - lo) * (height - 2) + 1
            ref_lines += (f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
                          f'stroke-dasharray="{dash}" stroke-width="1"/>')
    last = finite[-1][1]
    label = (f"accuracy {_pct(values[0])} to {_pct(last)} over {_age(t1 - t0)}, "
             f"{len(finite)} points; baseline {_pct(baseline)}")
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{label}"><title>{label}</title>{ref_lines}{lines}{dots}</svg>')


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x * 100:.1f}%"


def _age(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f}s"
    if s < 90 * 60:
        return f"{s / 60:.0f}m"
    if s < 36 * 3600:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"
