"""One cycle: sources -> records -> join -> windows -> an immutable Report.

The pipeline owns all mutable model state and is driven by one thread (with ``global.ingest_threads:
2`` a second one only parses polls ahead of it); everything else (the HTTP server, scrapes, the
actions) reads the Report it publishes (``exporter.report.model``);
the catalogue above turns that into metric families. Prediction sources are applied before
label sources within a cycle, so a label read in the same cycle as its prediction joins at
once instead of waiting as an orphan.

About 470 lines, over the house's 400: the cycle, applying a batch and the checkpoint all touch
the same state, and the whole-column helpers they use already live in ``ingest.batch_ops``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from exporter import __version__
from exporter.config import Config, ModelConfig
from exporter.core import parse_ahead
from exporter.core.classes import ClassIndex
from exporter.core.invalid_log import RateLimitedLog
from exporter.core.join import Joiner
from exporter.core.reference import ReferenceStore
from exporter.core.reporting import build_report
from exporter.core.source_stats import SourceStats
from exporter.core.versions import VersionState
from exporter.foundation.clock import Clock
from exporter.foundation.cores import USABLE_CORES
from exporter.foundation.reject_reasons import DUPLICATE, TOO_MANY_VERSIONS, UNKNOWN_CLASS, UNKNOWN_MODEL
from exporter.ingest.batch_ops import (
    encode_by_value,
    factorize,
    first_occurrences,
    groups,
    model_rows,
    positive_probabilities,
    rows_of,
    spread,
)
from exporter.ingest.batches import LabelBatch, ParseResult, PredictionBatch, id_keys
from exporter.ingest.block_parser import BlockParser
from exporter.ingest.records import UNKNOWN_VERSION, RecordSpec
from exporter.report.model import Report
from exporter.sources import build_source
from exporter.sources.base import Poll, Source

log = logging.getLogger(__name__)
VersionKey = tuple[str, str]
#: Pacing a label source behind catching-up predictions (``Pipeline._pace_labels``): the record
#: size assumed before it has read any, and the smallest budget it gets.
DEFAULT_LABEL_BYTES = 64
MIN_LABEL_BUDGET = 4 << 10
#: Catching up on a backlog, one cycle reads for at most this long before it publishes its Report
#: (``Pipeline.run_cycle``); the round cap only matters under a clock that does not move (tests).
CATCH_UP_SECONDS = 1.0
MAX_CATCH_UP_ROUNDS = 1000
#: With ``global.ingest_threads: 2``, polls parsed ahead of the one being applied: two, so that
#: a label poll (quick to parse, slow to apply) does not leave the parsing thread idle.
PARSE_AHEAD = 2


class _Polled(NamedTuple):
    """One poll of a cycle, and whether it is the last of its round."""

    src: Source
    poll: Poll
    now: float
    round_end: bool
    seconds: float  # the poll's reading took


@dataclass(frozen=True)
class _Parsed:
    """A poll's records as parsed, where its refusals were, and how long parsing took."""

    result: ParseResult
    where: dict[str, str]
    seconds: float


class Pipeline:
    """The mutable model state and the cycle that updates it.

    ``clock`` gives the wall time records and windows are judged against; ``timer`` measures
    how long each source's poll takes (``mlmon_exporter_poll_duration_seconds``). Both are
    injected so a test (the golden exposition) can make every number of a cycle reproducible.
    """

    def __init__(self, config: Config, clock: Clock = time.time, sources: Sequence[Source] | None = None,
                 *, timer: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.timer = timer
        self.config = config
        self.sources: list[Source] = list(sources) if sources is not None else [
            build_source(s) for s in config.sources]
        self.source_stats: dict[str, SourceStats] = defaultdict(SourceStats)
        self.classes: dict[str, ClassIndex] = {m.name: ClassIndex(m) for m in config.models}
        self.versions: dict[VersionKey, VersionState] = {}
        self.joiner = Joiner({m.name: (m.join.ttl, m.join.max_pending) for m in config.models})
        self.orphans_total: Counter[str] = Counter()
        self.references = ReferenceStore(config)
        self._specs = {s.name: RecordSpec.from_source(s.config, self._feature_names(s.config.model))
                       for s in self.sources}
        self._parsers = {s.name: BlockParser(s.config.kind, self._specs[s.name]) for s in self.sources}
        self._invalid_log = RateLimitedLog()
        self._ingest_threads = min(config.global_.ingest_threads, USABLE_CORES)
        self._backlog: dict[str, bool] = {}  # source -> its last poll stopped at its byte budget
        self._poll_span: str | None = None
        self._unversioned_logged: set[str] = set()  # sources already told about records without a version
        self.cycles = 0
        self.report = Report(clock(), False)

    def _feature_names(self, model: str | None) -> tuple[str, ...]:
        models = [m for m in self.config.models if model is None or m.name == model]
        return tuple(dict.fromkeys(f for m in models for f in m.drift.features))

    # -- the cycle ----------------------------------------------------------------------------------
    def run_cycle(self) -> Report:
        """Read every due source, then publish one Report.

        While a source stops at its byte budget with more to read (a backlog), the cycle reads
        round after round, up to ``CATCH_UP_SECONDS``, before it builds the Report: a Report and
        its rendering (exact KS p-values per window and feature) cost ~7 ms for a binary model
        with 10 drift features, a fifth of applying a 4 MiB poll and its labels, so one per poll
        spent about a tenth of a catch-up on Reports no scrape reads. Each round ends with
        ``advance``, so the join's bounds hold after every poll as before.

        Polls are applied in order, each committed after it is applied. A cycle that fails
        rewinds the sources, so what it read and did not commit is read again.
        """
        now = self.clock()
        started = self.timer()
        try:
            polls = self._polls(now, started)
            applied = 0
            if self._parses_ahead(now):
                applied = parse_ahead.in_order(polls, self._parse, self._apply, PARSE_AHEAD)
            else:
                for polled in polls:
                    self._apply(polled, self._parse(polled))
                    applied += 1
            if not applied:  # no source was due: the windows still slide
                self.advance(now)
        except BaseException:
            for src in self.sources:
                src.rewind()
            raise
        self.cycles += 1
        self.report = self.build_report(now)
        return self.report

    def _polls(self, now: float, started: float) -> Iterator[_Polled]:
        """The cycle's polls in the order they are applied, each with whether it ends its round:
        every due source (predictions first, so a label read in the same round as its prediction
        joins at once), round after round while there is a backlog and time left."""
        ordered = sorted(self.sources, key=lambda s: s.config.kind != "predictions")
        for rounds in range(1, MAX_CATCH_UP_ROUNDS + 1):
            read: dict[str | None, int] = {}  # records each prediction source read this round
            due = [src for src in ordered if src.due(now)]
            for i, src in enumerate(due):
                self._pace_labels(src, read)
                poll_started = self.timer()
                poll = src.poll(now)
                reading = self.timer() - poll_started
                src.poll_budget = None
                self._backlog[src.name] = poll.backlog
                st = self.source_stats[src.name]  # counting a 4 MiB poll's newlines costs ~1 ms
                read[src.name] = poll.records_estimate(st.bytes_read / st.records if st.records else None)
                yield _Polled(src, poll, now, i == len(due) - 1, reading)
            if not self.has_backlog or self.timer() - started >= CATCH_UP_SECONDS or rounds == MAX_CATCH_UP_ROUNDS:
                return

    def _parses_ahead(self, now: float) -> bool:
        """Whether this cycle parses on a second thread while it applies (``global.ingest_threads:
        2``, ``parse_ahead``): only where every due source reads ahead, since a poll is then made
        before the one before it is committed. The sources stay on this thread (they are not
        thread-safe); the parsers are used only by the parsing thread while it runs."""
        return self._ingest_threads > 1 and all(s.reads_ahead for s in self.sources if s.due(now))

    def _parse(self, polled: _Polled) -> _Parsed:
        started = self.timer()
        poll = polled.poll
        result, where = self._parsers[polled.src.name].parse(poll.blocks, polled.now, poll.lines, poll.objects,
                                                             poll.origins)
        return _Parsed(result, where, self.timer() - started)

    def _apply(self, polled: _Polled, parsed: _Parsed) -> None:
        """Apply one parsed poll, commit it, and at the end of a round ``advance``."""
        started = self.timer()
        src, poll, now = polled.src, polled.poll, polled.now
        result = parsed.result
        # records refused after parsing (duplicate, unknown class, ...) are located by the poll's span
        self._poll_span = poll.span()
        stats = self.source_stats[src.name]
        self._count(src.name, result, poll.rejected, {**parsed.where, **poll.rejected_where}, now)
        if isinstance(result.batch, PredictionBatch):
            self.apply_predictions(src.name, result.batch, now)
        elif isinstance(result.batch, LabelBatch):
            self.apply_labels(src.name, result.batch, now)
        src.commit(poll.token)
        stats.bytes_read += sum(len(b.data) for b in poll.blocks) + sum(map(len, poll.lines)) + len(poll.lines)
        self._poll_span = None
        # reading, parsing and applying, whichever thread parsed
        stats.poll_duration.observe(np.array([polled.seconds + parsed.seconds + self.timer() - started]))
        if polled.round_end:
            self.advance(now)

    def _pace_labels(self, src: Source, read: dict[str | None, int]) -> None:
        """Give a label source a byte budget that keeps it in step with catching-up predictions.

        Catching up on a backlog (a first start on existing files, a long outage), a labels file
        of short lines is read many times faster than the predictions file it belongs to; labels
        whose predictions are still unread would wait in the bounded join and be pushed out as
        orphans, and their predictions expire later for want of them. So while a prediction
        source of the label source's model stopped at its byte budget this cycle, the label
        source may read about as many records as those prediction sources did (its average record
        size times their count); the rest waits on disk, costing no memory, for the next cycle.
        """
        if src.config.kind != "labels":
            return
        relevant = [p for p in self.sources if p.config.kind == "predictions" and self._backlog.get(p.name)
                    and (src.config.model is None or p.config.model in (None, src.config.model))]
        if not relevant:
            return
        records = sum(read.get(p.name, 0) for p in relevant)
        st = self.source_stats[src.name]
        per_record = st.bytes_read / st.records if st.records else DEFAULT_LABEL_BYTES
        src.poll_budget = max(MIN_LABEL_BUDGET, int(records * per_record))

    def _note_unversioned(self, source: str, versions: list[str]) -> None:
        """Say once per source that records without a version are counted as version "unknown":
        otherwise a misspelt version field shows only as an odd label value. ``versions``: the
        distinct versions of a batch (comparing every row cost 2% of ingest)."""
        spec = self._specs.get(source)
        if spec is None or spec.model_version is not None or source in self._unversioned_logged:
            return
        if UNKNOWN_VERSION in versions:
            self._unversioned_logged.add(source)
            log.info('predictions without a model_version are counted as version "unknown" '
                     "(set model_version or fields.model_version on the source to say where it is)",
                     extra={"source": source, "field": spec.fields.get("model_version", "model_version")})

    def _count(self, source: str, result: ParseResult, rejected: Counter[str], where: dict[str, str],
               now: float) -> None:
        stats = self.source_stats[source]
        stats.records += result.records + sum(rejected.values())
        for reason, n in (result.invalid + rejected).items():
            self.invalid(source, reason, n, now, where.get(reason))
        if result.newest_timestamp is not None:
            stats.newest_timestamp = max(stats.newest_timestamp or -np.inf, result.newest_timestamp)

    def invalid(self, source: str, reason: str, n: int, now: float, where: str | None = None) -> None:
        if n:
            self.source_stats[source].invalid[reason] += n
            self._invalid_log.warn(source, reason, n, now, where or self._poll_span)

    # -- predictions --------------------------------------------------------------------------------
    def apply_predictions(self, source: str, batch: PredictionBatch, now: float) -> None:
        if len(batch) == 0:
            return
        for model_name, sel in model_rows(batch.model):
            model = self.config.model(model_name)
            if model is None:
                self.invalid(source, UNKNOWN_MODEL, len(batch) if sel is None else int(sel.sum()), now)
                continue
            ids = rows_of(batch.id, sel)
            encoded, hashes = id_keys(batch, sel)
            dup = ~first_occurrences(ids, hashes) | self.joiner.is_known(model_name, ids, hashes, encoded)
            pred_idx = encode_by_value(self.classes[model_name].encode, rows_of(batch.prediction, sel))
            unknown = (pred_idx < 0) & ~dup
            self.invalid(source, DUPLICATE, int(dup.sum()), now)
            self.invalid(source, UNKNOWN_CLASS, int(unknown.sum()), now)
            ok = ~dup & ~unknown
            versions = rows_of(batch.model_version, sel)
            v_codes, v_names = factorize(versions)  # once: the version cap and the groups both need it
            self._note_unversioned(source, v_names.tolist())
            over = ok & self._over_version_cap(model, v_names)[v_codes]
            self.invalid(source, TOO_MANY_VERSIONS, int(over.sum()), now)
            ok &= ~over
            # the rows kept, as one mask over the batch (None: all of them, and no column is copied)
            keep = (None if sel is None else sel) if ok.all() else \
                ok if sel is None else spread(sel, ok)
            cols = {
                "version": rows_of(versions, None if keep is None else ok),
                "pred_idx": rows_of(pred_idx, None if keep is None else ok),
                "confidence": rows_of(batch.confidence, keep),
                "pred_ts": np.minimum(rows_of(batch.timestamp, keep), now),  # a future stamp counts as now
            }
            feats = {f: rows_of(batch.features[f], keep) for f in model.drift.features if f in batch.features}
            probs = batch.probabilities if keep is None else batch.probabilities[keep]
            p_pos = (positive_probabilities(probs, model.positive_class)
                     if model.task == "binary" else np.full(int(ok.sum()), np.nan))
            for version, rows in groups(cols["version"], (rows_of(v_codes, None if keep is None else ok), v_names)):
                mine = None if rows.size == cols["version"].size else rows  # one version: all the rows
                self._version(model, version, now).add_predictions(
                    rows_of(cols["pred_ts"], mine), rows_of(cols["pred_idx"], mine), rows_of(cols["confidence"], mine),
                    now, features={f: rows_of(v, mine) for f, v in feats.items()}, p_positive=rows_of(p_pos, mine))
            classes = self.classes[model_name]
            keys = (encoded if ok.all() else encoded.filter(pa.array(ok)), hashes[ok])
            _, matched, rejected = self.joiner.add_predictions(model_name, rows_of(ids, None if ok.all() else ok), cols,
                                                               now, accepts=classes.accepts, keys=keys)
            # a waiting label of a class this model cannot score is its own source's invalid record
            for label_source, n in Counter(rejected.tolist()).items():
                self.invalid(label_source, UNKNOWN_CLASS, n, now, "labels that waited for their prediction")
            if matched.label.size:
                self._apply_outcomes(model, matched.pred, encode_by_value(classes.encode, matched.label),
                                     matched.label_ts, now)

    # -- labels ----------------------------------------------------------------------------------------
    def apply_labels(self, source: str, batch: LabelBatch, now: float) -> None:
        if len(batch) == 0:
            return
        restrict = self._source_model(source)
        models = batch.model.copy()
        if restrict is not None:
            models[:] = restrict
        encoded, hashes = id_keys(batch)  # once per batch: de-duplication, lookups and the waiting buffers
        first = first_occurrences(batch.id, hashes)
        self.invalid(source, DUPLICATE, int((~first).sum()), now)
        kept = None if first.all() else first  # None: every row, and no column is copied
        if kept is not None:
            encoded, hashes = encoded.filter(pa.array(kept)), hashes[kept]
        ids, labels, ts, models = (rows_of(batch.id, kept), rows_of(batch.label, kept), rows_of(batch.timestamp, kept),
                                   rows_of(models, kept))
        slots: dict[str, npt.NDArray[np.int64]] = {}
        rows_by_model, found, dup = self.joiner.locate_labels(ids, models, hashes, encoded, slots)
        self.invalid(source, DUPLICATE, int(dup.sum()), now)
        for model_name, rows in rows_by_model.items():
            model = self.config.model(model_name)
            assert model is not None
            sel = rows >= 0
            true_idx = encode_by_value(self.classes[model_name].encode, labels[sel])
            good = true_idx >= 0
            self.invalid(source, UNKNOWN_CLASS, int((~good).sum()), now)
            pred = self.joiner.take_pending(model_name, rows[sel][good], now, slots[model_name][sel][good],
                                            hashes[sel][good], with_ids=False)
            self._apply_outcomes(model, pred, true_idx[good], ts[sel][good], now)
        waiting = ~found & ~dup
        if waiting.any():
            # labels naming an unknown model can never join
            named = models[waiting]
            codes, names = factorize(named)
            unknown = np.array([m is not None and self.config.model(m) is None for m in names.tolist()],
                               dtype=bool)[codes]
            self.invalid(source, UNKNOWN_MODEL, int(unknown.sum()), now)
            idx = np.flatnonzero(waiting)[~unknown]
            self.joiner.add_orphans(ids[idx], labels[idx], ts[idx], models[idx], now, source,
                                    keys=(encoded.take(pa.array(idx)), hashes[idx]))

    def _over_version_cap(self, model: ModelConfig, versions: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """Rows of versions that would exceed ``max_versions`` (new versions admitted in sorted order)."""
        known = {v for (m, v) in self.versions if m == model.name}
        room = model.max_versions - len(known)
        new = sorted(set(versions.tolist()) - known)
        refused = set(new[max(room, 0):])
        if not refused:
            return np.zeros(versions.size, dtype=bool)
        return np.fromiter((v in refused for v in versions.tolist()), dtype=bool, count=versions.size)

    def _source_model(self, source: str) -> str | None:
        for s in self.sources:
            if s.name == source:
                return s.config.model
        return None

    def _apply_outcomes(self, model: ModelConfig, pred: dict[str, npt.NDArray[Any]],
                        true_idx: npt.NDArray[np.int32], label_ts: npt.NDArray[np.float64], now: float) -> None:
        for version, rows in groups(pred["version"]):
            vs = self._version(model, version, now)
            vs.add_outcomes(label_ts[rows], pred["pred_ts"][rows], pred["pred_idx"][rows].astype(np.int32),
                            true_idx[rows], pred["confidence"][rows], now)
            vs.last_seen = max(vs.last_seen, now)

    def _version(self, model: ModelConfig, version: str, now: float) -> VersionState:
        key = (model.name, version)
        vs = self.versions.get(key)
        if vs is None:
            vs = self.versions[key] = VersionState(model, self.classes[model.name], self.config.global_.windows, now,
                                                   self.references.get(model), self.config.global_.window_buckets)
            log.info("new model version", extra={"model": model.name, "model_version": version})
        return vs

    # -- the clock --------------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        expired, orphan_models = self.joiner.expire(now)
        for model_name, gone in expired.items():
            for version, rows in groups(gone["version"]):
                vs = self.versions.get((model_name, version))
                if vs is not None:
                    vs.expired_total += int(rows.size)
        for m in orphan_models.tolist():
            self.orphans_total[m or ""] += 1
        idle = self.config.global_.version_idle_expiry
        for key in [k for k, vs in self.versions.items() if vs.last_seen < now - idle]:
            log.info("model version idle, series dropped", extra={"model": key[0], "model_version": key[1]})
            del self.versions[key]
        for vs in self.versions.values():
            vs.advance(now)

    # -- checkpoint / reload ------------------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this pipeline is (committed positions only)."""
        return {
            "sources": {s.name: s.state() for s in self.sources},
            "source_stats": {name: {"records": st.records, "invalid": dict(st.invalid),
                                    "newest_timestamp": st.newest_timestamp}
                             for name, st in self.source_stats.items()},
            "classes": {name: list(ci.names) for name, ci in self.classes.items()},
            "join": self.joiner.state(),
            "versions": [[m, v, vs.state()] for (m, v), vs in self.versions.items()],
            "orphans_total": dict(self.orphans_total),
        }

    def restore_state(self, state: dict[str, Any], now: float) -> None:
        """Continue from ``export_state`` output, possibly of an older config (reload, restart).

        State of models that are gone is dropped; a model whose fixed classes changed starts
        empty, because its saved class indices would no longer mean the same classes.
        """
        compatible: set[str] = set()
        for name, names in state["classes"].items():
            ci = self.classes.get(name)
            if ci is None:
                continue
            if names[: len(ci.names)] == ci.names[: len(names)] and len(names) <= ci.capacity:
                ci.restore(names)
                compatible.add(name)
            else:
                log.warning("classes of model changed; its saved state is dropped", extra={"model": name})
        for src in self.sources:
            saved = state["sources"].get(src.name)
            if saved is not None:
                src.restore(saved)
        for name, saved in state["source_stats"].items():
            st = self.source_stats[name]
            st.records = int(saved["records"])
            st.invalid = Counter({k: int(v) for k, v in saved["invalid"].items()})
            st.newest_timestamp = saved["newest_timestamp"]
        join_state = state["join"]
        join_state = {**join_state, "models": {k: v for k, v in join_state["models"].items() if k in compatible}}
        self.joiner.restore(join_state)
        for model_name, version, saved in state["versions"]:
            model = self.config.model(model_name)
            if model is None or model_name not in compatible:
                continue
            vs = self._version(model, version, now)
            vs.restore(saved, now)
        self.orphans_total = Counter({k: int(v) for k, v in state["orphans_total"].items()})

    @property
    def has_backlog(self) -> bool:
        """A source stopped at its byte budget in the last cycle, with more to read."""
        return any(self._backlog.values())

    @property
    def ready(self) -> bool:
        return all(s.health.polled_once for s in self.sources)

    def build_report(self, now: float) -> Report:
        """The Report of the state as it is (``run_cycle`` publishes one per cycle)."""
        return build_report(self, now, self.ready)


BUILD_VERSION = __version__
