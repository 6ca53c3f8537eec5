"""Tail JSON-lines files matching a glob, surviving rotation, truncation and deletion.

Model servers write inference logs to files that logrotate (or the container runtime) renames,
truncates and deletes underneath us. A file is therefore identified by ``(st_dev, st_ino)``,
never by its name, and each one is kept open: after ``mv app.log app.log.1`` the open
descriptor still reads the old file to its end while the new ``app.log`` is picked up as a new
file, so nothing written around the rotation is lost.

Positions are only advanced by ``commit``. ``poll`` returns complete lines only (the
unterminated tail stays unconsumed until its newline arrives) and hands back a token holding the
offsets it reached; committed offsets therefore always point at the start of a line (or, while a
too-long line is being skipped, into that line with the ``skip`` flag set, so a line longer than
one poll's budget still gets skipped). A poll reads on from where the previous poll stopped,
committed or not (``reads_ahead``: the pipeline parses one poll while it applies the one before),
and ``rewind`` goes back to the committed offsets: a cycle that failed reads its polls again.

Rules, in the order they are applied on each poll:

* **Discovery.** Every regular file matching the glob is tracked. Files present at the first
  poll start at the beginning, or with ``start_at: end`` after their last complete line; files
  that appear later (or after ``restore``) are always read from the beginning: they are new.
* **Rotation / deletion.** A tracked file that no longer matches the glob (renamed away, or
  deleted) is read to its end through the open descriptor. It is dropped once it has been at
  its end for ``rotate_wait`` seconds since it left the glob, which gives a writer that still
  holds it open time to finish. A final line without a newline is never returned.
* **Truncation** (copytruncate): when a file is shorter than the offset the last poll reached
  it is read again from 0.
* **Blocks.** Complete lines are handed over as byte blocks (one per file and poll, read 4 MiB
  at a time; a skipped too-long line starts a new block), never split here: the parser
  (``exporter.ingest.block_parser``) splits and decodes a block in C. Each block carries its
  path and byte offset, so a refused record can be located.
* **Long lines** (over ``max_line_bytes``) that do not end within the chunk being read are
  skipped as they stream past, never held whole in memory, and counted in
  ``Poll.rejected["line_too_long"]`` (with their ``path:offset`` in ``Poll.rejected_where``);
  shorter too-long lines are counted by the parser the same way. Empty lines are ignored.
* **Budget.** One poll reads at most ``max_bytes_per_poll`` bytes in total (the source key,
  4 MiB by default) so a large backlog or a long outage is worked off over several polls
  instead of stalling one or spiking memory.
* **Errors.** An ``OSError`` on one file (e.g. permission denied) counts in
  ``health.errors_total`` and marks the source down for that poll; the other files are still
  read. A glob that matches nothing is not an error: the file may not exist yet. It is no
  silent "no traffic" either: ``files_matched`` (``mlmon_exporter_source_files``) counts the
  regular files the glob matched at the last poll, and while it is 0 a warning is logged at the
  first poll and then every ``NO_FILES_WARN_INTERVAL`` seconds.

``state()`` is ``{"files": [{"path", "dev", "ino", "offset", "skip", "head_bytes",
"head_sha256"}], "started": bool}`` of the committed positions; ``head_*`` fingerprint the
file's first (up to 1 KiB of) bytes already read, ``started`` whether the first poll happened
(``start_at`` only applies before it). ``restore`` looks each inode up at its recorded path, among
the glob's matches and in the recorded path's directory (where logrotate puts ``app.log.1``),
and resumes at its offset; from 0 if the file is now shorter or its fingerprint differs
(truncated and rewritten, or the inode number reused by a new file). An inode that is gone
cannot be read any more; whatever file now sits at its path is new and is read from 0, as is
every other file not in the state.

About 450 lines, over the house's 400: identity by inode, rotation, truncation, deletion and the
checkpointed offsets are one state machine over the open files, read best in one place.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import stat
from collections import Counter
from dataclasses import dataclass
from typing import Any

from exporter.config import FileSourceConfig, SourceConfig
from exporter.foundation.reject_reasons import LINE_TOO_LONG
from exporter.ingest.block_parser import Block
from exporter.sources.base import Poll, Source

log = logging.getLogger(__name__)

FileKey = tuple[int, int]  # (st_dev, st_ino)

DEFAULT_ROTATE_WAIT = 5.0
HEAD_BYTES = 1024  # how much of a file's start the checkpoint fingerprints
_CHUNK = 4 << 20  # one read per poll at the default max_bytes_per_poll
NO_FILES_WARN_INTERVAL = 600.0  # seconds between "matches no file" warnings while it stays so


def matching_files(pattern: str) -> list[str]:
    """The regular files ``pattern`` (a glob, ``**`` recursive) matches now, sorted."""
    return [p for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p)]


@dataclass
class _Tailed:
    """A tracked file: its open descriptor and committed position."""

    key: FileKey
    path: str
    fd: int
    offset: int
    seq: int  # discovery order: older files are read first, so a rotated file precedes its successor
    skip: bool = False  # the committed offset is inside a too-long line: discard to its newline
    orphaned_at: float | None = None  # when it stopped matching the glob (rotated or deleted)
    ahead: tuple[int, bool] | None = None  # (offset, skip) a poll reached, until committed or rewound


@dataclass(frozen=True)
class _Position:
    key: FileKey
    offset: int
    skip: bool
    drop: bool  # the file is finished (rotated or deleted, read to its end): close it on commit


@dataclass(frozen=True)
class FileToken:
    """What ``commit`` applies: the positions one poll reached."""

    positions: tuple[_Position, ...]


@dataclass
class _ReadResult:
    offset: int
    skip: bool
    used: int
    eof: bool


def _key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


def _head(fd: int, offset: int) -> tuple[int, str] | None:
    """Fingerprint of the already-read start of a file: (length, sha256 of its first bytes).

    Inode numbers are reused as soon as a file is deleted, so a checkpointed (dev, ino) alone
    could resume a brand-new file in the middle; the fingerprint tells them apart.
    """
    n = min(offset, HEAD_BYTES)
    if n <= 0:
        return None
    try:
        data = os.pread(fd, n, 0)
    except OSError:
        return None
    return len(data), hashlib.sha256(data).hexdigest()


class FileTailSource(Source):
    """A ``type: file`` source; ``path`` (a glob) overrides ``config.path``, e.g. in tests."""

    config_type = FileSourceConfig
    reads_ahead = True

    @classmethod
    def config_warnings(cls, config: SourceConfig) -> list[str]:
        """A glob that matches no file yet (the files may still appear later)."""
        path = config.path if isinstance(config, FileSourceConfig) else None
        if path and not matching_files(path):
            return [f"sources: {config.name!r}: path {path!r} matches no file yet (it is read once files appear)"]
        return []
    config: FileSourceConfig

    def __init__(self, config: FileSourceConfig, path: str | None = None, *,
                 max_bytes_per_poll: int | None = None,
                 rotate_wait: float = DEFAULT_ROTATE_WAIT) -> None:
        super().__init__(config)
        pattern = path if path is not None else config.path
        if not pattern:
            raise ValueError(f"source {config.name!r}: a file source needs a path")
        self.pattern = os.fspath(pattern)
        self.max_line_bytes = config.max_line_bytes
        # The first file must always be able to finish its longest allowed line in one poll.
        budget = config.max_bytes_per_poll if max_bytes_per_poll is None else max_bytes_per_poll
        self.max_bytes_per_poll = max(budget, self.max_line_bytes + 1)
        self.rotate_wait = rotate_wait
        self._files: dict[FileKey, _Tailed] = {}
        self._seq = 0
        self._started = False  # start_at applies only to files present at the first poll
        self._failing: set[str] = set()  # paths whose last operation failed (log transitions only)
        self.files_matched = 0  # regular files the glob matched at the last poll
        self._no_files_warned: float | None = None  # when "matches no file" was last logged

    # --- Source interface -------------------------------------------------------------------

    def poll(self, now: float) -> Poll:
        errors = self._discover(now)
        blocks: list[Block] = []
        rejected: Counter[str] = Counter()
        where: dict[str, str] = {}
        positions: list[_Position] = []
        budget = self.max_bytes_per_poll
        if self.poll_budget is not None:  # paced by the pipeline; a longest line must still fit
            budget = min(budget, max(self.poll_budget, self.max_line_bytes + 1))
        more = False  # stopped with complete lines left to read (the budget ran out)
        # Oldest first: a rotated-away file's lines were written before its successor's.
        for f in sorted(self._files.values(), key=lambda f: f.seq):
            if budget <= 0:
                more = True
                break
            try:
                size = os.fstat(f.fd).st_size
                offset, skip = f.ahead or (f.offset, f.skip)
                if size < offset:  # truncated: read again from the start
                    offset, skip = 0, False
                r = self._read(f, offset, skip, budget, blocks, rejected, where)
            except OSError as e:
                errors += 1
                self._failed(f.path, e)
                continue
            self._recovered(f.path)
            f.ahead = (r.offset, r.skip)
            budget -= r.used
            more = more or (not r.eof and r.used > 0)
            drop = f.orphaned_at is not None and r.eof and now - f.orphaned_at >= self.rotate_wait
            if drop or r.offset != f.offset or r.skip != f.skip:
                positions.append(_Position(f.key, r.offset, r.skip, drop))
        self.health.polled_once = True
        if errors:
            self.health.errors_total += errors
            self.health.up = False
        else:
            self.health.up = True
            self.health.last_success = now
        return Poll(blocks=blocks, rejected=rejected, rejected_where=where, token=FileToken(tuple(positions)),
                    backlog=more)

    def commit(self, token: Any) -> None:
        if not isinstance(token, FileToken):
            raise TypeError(f"not a file source token: {token!r}")
        for p in token.positions:
            f = self._files.get(p.key)
            if f is None:
                continue
            f.offset, f.skip = p.offset, p.skip
            if f.ahead == (p.offset, p.skip):
                f.ahead = None
            if p.drop:
                self._close(f)

    def rewind(self) -> None:
        for f in self._files.values():
            f.ahead = None

    def state(self) -> dict[str, Any]:
        files = []
        for f in sorted(self._files.values(), key=lambda f: f.seq):
            entry: dict[str, Any] = {"path": f.path, "dev": f.key[0], "ino": f.key[1],
                                     "offset": f.offset, "skip": f.skip}
            head = _head(f.fd, f.offset)
            if head is not None:
                entry["head_bytes"], entry["head_sha256"] = head
            files.append(entry)
        return {"files": files, "started": self._started}

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        # A checkpoint written before the first poll must not turn start_at: end into "read all".
        self._started = bool(state.get("started", True))
        matches = self._glob()
        for entry in state.get("files", []):
            try:
                path = str(entry["path"])
                key: FileKey = (int(entry["dev"]), int(entry["ino"]))
                offset, skip = int(entry["offset"]), bool(entry.get("skip", False))
                head = None
                if "head_sha256" in entry:
                    head = (int(entry["head_bytes"]), str(entry["head_sha256"]))
            except (KeyError, TypeError, ValueError):
                log.warning("source %s: ignoring malformed checkpoint entry %r", self.name, entry)
                continue
            if key in self._files or offset < 0:
                continue
            found = self._find(key, path, matches)
            if found is None:
                log.info("source %s: %s (inode %d) is gone; its unread remainder is lost",
                         self.name, path, key[1])
                continue
            fd, size, where = found
            if size < offset or (head is not None and _head(fd, head[0]) != head):
                # truncated while we were down, or the inode number now belongs to another file
                offset, skip = 0, False
            self._files[key] = _Tailed(key, where, fd, offset, self._next_seq(), skip)

    def close(self) -> None:
        for f in list(self._files.values()):
            self._close(f)

    # --- internals --------------------------------------------------------------------------

    def _glob(self) -> list[str]:
        return sorted(glob.glob(self.pattern, recursive=True))

    def _discover(self, now: float) -> int:
        """Track new files matching the glob, mark vanished ones orphaned; returns error count."""
        errors = 0
        seen: set[FileKey] = set()
        for path in self._glob():
            try:
                st = os.stat(path)
            except FileNotFoundError:  # vanished between glob and stat
                continue
            except OSError as e:
                errors += 1
                self._failed(path, e)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            key = _key(st)
            f = self._files.get(key)
            if f is None:
                try:
                    f = self._open(path)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    errors += 1
                    self._failed(path, e)
                    continue
                if f is None:
                    continue
                key = f.key  # the path may have been replaced between stat and open
            self._recovered(path)
            f.path = path
            f.orphaned_at = None
            seen.add(key)
        for f in self._files.values():
            if f.key not in seen and f.orphaned_at is None:
                f.orphaned_at = now
        self._started = True
        self._count_matches(len(seen), now)
        return errors

    def _count_matches(self, n: int, now: float) -> None:
        """Record how many files the glob matched; warn while none do (a typo looks like no traffic)."""
        self.files_matched = n
        if n == 0:
            last = self._no_files_warned
            if last is None or now - last >= NO_FILES_WARN_INTERVAL or now < last:
                self._no_files_warned = now
                log.warning("source %s: path %s matches no file yet", self.name, self.pattern,
                            extra={"source": self.name, "path": self.pattern})
        elif self._no_files_warned is not None:
            self._no_files_warned = None
            log.info("source %s: path %s now matches %d file(s)", self.name, self.pattern, n,
                     extra={"source": self.name, "path": self.pattern})

    def _open(self, path: str) -> _Tailed | None:
        """Track the file now at ``path``; the one already tracked if it turns out to be that."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            key = _key(st)
            if key in self._files or not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return self._files.get(key)
            offset, skip = 0, False
            if not self._started and self.config.start_at == "end":
                offset, skip = self._end_of_last_line(fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        f = _Tailed(key, path, fd, offset, self._next_seq(), skip)
        self._files[key] = f
        return f

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _end_of_last_line(self, fd: int, size: int) -> tuple[int, bool]:
        """Where ``start_at: end`` starts: after the last newline, so the line being written is
        read whole once complete; if that line is already too long, skip it from the end."""
        pos = size
        while pos > 0 and size - pos <= self.max_line_bytes:
            start = max(0, pos - 65536)
            chunk = os.pread(fd, pos - start, start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                end = start + i + 1
                return (end, False) if size - end <= self.max_line_bytes else (size, True)
            pos = start
        return (0, False) if size <= self.max_line_bytes else (size, True)

    def _read(self, f: _Tailed, offset: int, skip: bool, budget: int, blocks: list[Block],
              rejected: Counter[str], where: dict[str, str]) -> _ReadResult:
        """Append the complete lines after ``offset`` (at most ``budget`` bytes) to ``blocks``,
        read a chunk at a time and handed over as one block per run of adjacent lines (see
        ``_join_adjacent``): the parser splits them, no Python runs here per line.

        The unterminated tail is collected in ``pending`` only while it is within the line
        limit; beyond it the line is counted as rejected and the rest of it discarded as it
        is read (``skip``), so memory stays bounded by the limit plus one chunk. Lines over the
        limit that end inside a chunk are left to the parser, which counts them the same way.
        """
        fd = f.fd
        limit = self.max_line_bytes
        first_block = len(blocks)
        pos = offset  # next byte to read
        line_start = offset  # first unconsumed byte (returned as the new offset)
        pending: list[bytes] = []
        pending_len = 0
        used = 0
        eof = False
        while used < budget:
            data = os.pread(fd, min(_CHUNK, budget - used), pos)
            if not data:
                eof = True
                break
            pos += len(data)
            used += len(data)
            if skip:
                i = data.find(b"\n")
                if i < 0:
                    line_start = pos
                    continue
                skip = False
                data = data[i + 1:]
                line_start = pos - len(data)
            cut = data.rfind(b"\n")
            if cut < 0:
                pending.append(data)
                pending_len += len(data)
            else:
                head = data[:cut]
                if pending:
                    pending.append(head)
                    head = b"".join(pending)
                rest = data[cut + 1:]
                if head:
                    blocks.append(Block(head, f.path, line_start))
                line_start = pos - len(rest)
                pending = [rest] if rest else []
                pending_len = len(rest)
            if pending_len > limit:
                rejected[LINE_TOO_LONG] += 1
                where.setdefault(LINE_TOO_LONG, f"{f.path}:{line_start}")
                skip = True
                pending = []
                pending_len = 0
                line_start = pos
        _join_adjacent(blocks, first_block)
        return _ReadResult(line_start, skip, used, eof)

    def _find(self, key: FileKey, path: str, matches: list[str]) -> tuple[int, int, str] | None:
        """Open the file with inode ``key``: at ``path``, a glob match, or beside ``path``."""
        candidates = [path, *matches]
        directory = os.path.dirname(path) or "."
        try:
            with os.scandir(directory) as entries:
                candidates += [e.path for e in entries if e.inode() == key[1]]
        except OSError:
            pass
        for cand in candidates:
            try:
                if _key(os.stat(cand)) != key:
                    continue
                fd = os.open(cand, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            st = os.fstat(fd)
            if _key(st) == key and stat.S_ISREG(st.st_mode):
                return fd, st.st_size, cand
            os.close(fd)
        return None

    def _close(self, f: _Tailed) -> None:
        self._files.pop(f.key, None)
        with contextlib.suppress(OSError):
            os.close(f.fd)

    def _failed(self, path: str, err: OSError) -> None:
        if path not in self._failing:
            self._failing.add(path)
            log.warning("source %s: cannot read %s: %s", self.name, path, err)

    def _recovered(self, path: str) -> None:
        if path in self._failing:
            self._failing.discard(path)
            log.info("source %s: %s is readable again", self.name, path)


def _join_adjacent(blocks: list[Block], first: int) -> None:
    """Make ``blocks[first:]`` one block per run of adjacent ones (each starting right after the
    newline that ends the one before; a skipped too-long line breaks a run). The parser then
    scans a poll of a file in one pass and one batch instead of one per 4 MiB read: each batch
    costs the join and the windows a few milliseconds of fixed work, and concatenating the
    batches' columns and id keys cost more than this one copy of the bytes."""
    if len(blocks) - first < 2:
        return
    runs: list[list[Block]] = []
    for b in blocks[first:]:
        last = runs[-1][-1] if runs else None
        if last is not None and last.origin == b.origin and last.offset + len(last.data) + 1 == b.offset:
            runs[-1].append(b)
        else:
            runs.append([b])
    blocks[first:] = [run[0] if len(run) == 1 else Block(b"\n".join(x.data for x in run), run[0].origin,
                                                          run[0].offset) for run in runs]

