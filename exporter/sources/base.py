"""What every source kind provides to the pipeline.

A poll returns raw records plus an opaque position token; the pipeline parses and applies
them, then calls ``commit(token)``. Positions only advance on commit, and ``state()`` only
reports committed positions, so a checkpoint taken between cycles is always consistent with
the counters it is saved beside: a crash re-reads, never skips, and never double-applies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from exporter.config import ModelConfig, SourceConfig
from exporter.foundation.http_messages import ListenerFactory, PostHandler
from exporter.ingest.block_parser import Block

#: A model's config by name (``Config.model``), or None for a model the config does not name.
ModelLookup = Callable[[str], ModelConfig | None]


@dataclass
class Poll:
    """One poll's harvest.

    ``blocks`` are byte blocks of complete JSON lines (the fast path: the parser splits them);
    ``lines`` are complete raw lines (bytes, without the newline) for sources that split text
    themselves; ``objects`` are already-decoded JSON values for sources that receive them
    decoded. Records are counted in that order: blocks, lines, objects.
    ``rejected`` counts records refused before parsing (e.g. ``line_too_long``), by reason;
    they count as records read too. ``rejected_where`` says, per reason, where the first of
    them was (``path:byte offset``), and ``origins`` where the ``lines`` and ``objects`` came
    from: ``(index of the first record, text)`` pairs in record order (an HTTP page, a
    CloudEvent id), so a log line about a refused record can say where to look. ``backlog``
    says the poll stopped at its byte budget with more to read, so the next cycle continues (the
    pipeline paces label sources meanwhile).
    """

    blocks: list[Block] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    objects: list[Any] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_where: dict[str, str] = field(default_factory=dict)
    origins: list[tuple[int, str]] = field(default_factory=list)
    token: Any = None
    backlog: bool = False

    def records_estimate(self, bytes_per_record: float | None = None) -> int:
        """About how many records it read, before parsing: its blocks' lines (their bytes over
        ``bytes_per_record`` where the source's average is known, else their newlines: a block's
        last line has none), lines, objects and records refused. Enough to pace label sources by."""
        nbytes = [len(b.data) for b in self.blocks if b.data]
        blocks = (round(sum(nbytes) / bytes_per_record) if bytes_per_record
                  else sum(b.data.count(b"\n") for b in self.blocks) + len(nbytes))
        return blocks + len(self.lines) + len(self.objects) + sum(self.rejected.values())

    def span(self) -> str | None:
        """Where its records came from, for refusals that cannot point at one record: the byte
        ranges of its blocks per file, or the pages / events it read."""
        if self.blocks:
            ranges: dict[str, tuple[int, int]] = {}
            for b in self.blocks:
                lo, hi = ranges.get(b.origin, (b.offset, b.offset))
                ranges[b.origin] = (min(lo, b.offset), max(hi, b.offset + len(b.data)))
            return ", ".join(f"{origin}:{lo}-{hi}" for origin, (lo, hi) in ranges.items())
        if self.origins:
            return "; ".join(text for _, text in self.origins)
        return None


@dataclass
class SourceHealth:
    """Self-metrics of one source, updated by the source itself."""

    up: bool = False
    errors_total: int = 0
    last_success: float | None = None
    polled_once: bool = False


@dataclass(frozen=True)
class SourceContext:
    """What the runtime hands every source it builds (``build_source``), so no source reaches
    up into the runtime and the runtime patches no source after construction.

    ``models`` looks a model's config up by name; the runtime passes one that follows config
    reloads, so a source kept across a reload sees the new models. ``listen`` makes a listener
    for a source that receives on an address of its own (``server.receiver_listener``). Either
    is None where there is no runtime (tests, tools): a source then does without.
    """

    models: ModelLookup | None = None
    listen: ListenerFactory | None = None


class Source(ABC):
    """A named input of prediction or label records.

    A source kind is built by the registry through ``build(config, context)``; one that receives
    HTTP POSTs on the exporter's own server declares them in ``routes()``, and one that needs
    something running (a listener of its own) does it in ``start()``. The runtime calls both
    for every source without knowing its kind.

    Each kind is built from its own config class (``config_type``, one of
    ``exporter.config.sources``), and narrows ``config`` to it.
    """

    #: The config class of this kind; ``build_source`` refuses any other.
    config_type: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.health = SourceHealth()
        #: A byte budget for the next poll only, set by the pipeline to pace labels behind
        #: catching-up predictions; sources that read bytes (files) honour it, others ignore it.
        self.poll_budget: int | None = None

    @classmethod
    def build(cls, config: SourceConfig, context: SourceContext) -> Source:
        """The source for ``config`` with what the runtime provides; kinds that need nothing of
        ``context`` keep this default."""
        return cls(config)

    @classmethod
    def config_warnings(cls, config: SourceConfig) -> list[str]:
        """Problems with ``config`` that do not make it invalid but that a user wants to hear
        about before starting (``--config.check``); none by default."""
        return []

    def routes(self) -> Mapping[str, PostHandler]:
        """POST paths this source serves on the exporter's shared HTTP server, path -> handler.
        Read by the runtime after each (re)build of the pipeline, so a source removed by a
        reload takes its routes with it. Polling sources serve none."""
        return {}

    def max_request_bytes(self) -> int:
        """The largest POST body its ``routes()`` accept (the shared server refuses bigger ones
        before reading them); 0 without routes."""
        return 0

    def start(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to start
        """Begin receiving (e.g. open a listener of its own). Called by the runtime for every
        source of a new pipeline, including ones kept across a reload: must be idempotent.
        May raise ``OSError`` when an address cannot be bound."""

    @abstractmethod
    def poll(self, now: float) -> Poll:
        """Read what is new since the last committed position. Never raises for I/O problems:
        records them in ``health`` (up=False, errors_total+=1) and returns an empty Poll."""

    @abstractmethod
    def commit(self, token: Any) -> None:
        """Advance the committed position to the one ``token`` stands for."""

    reads_ahead: bool = False
    """Whether ``poll`` reads on from where the previous poll stopped even before that one is
    committed (tokens are then committed in the order of their polls); without it, a poll reads
    from the committed position, and the pipeline commits each poll before the next."""

    def rewind(self) -> None:  # noqa: B027 - only a source that reads ahead has a position to forget
        """Forget the polls not committed: the next poll reads from the committed position."""

    def due(self, now: float) -> bool:
        """Whether this source wants polling now (HTTP sources poll on their own interval)."""
        return True

    def state(self) -> dict[str, Any]:
        """JSON-serialisable committed position, for the checkpoint."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook, stateless sources skip it
        """Resume from a position returned earlier by ``state()``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, sessions, listeners."""
