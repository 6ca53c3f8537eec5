"""FileTailSource against real files: appends, partial lines, rotation, truncation, deletion,
oversized lines, budgets and checkpoint/restore. No mocks: what logrotate does, done for real."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import FileSourceConfig
from exporter.ingest.records import RecordSpec, parse_predictions
from exporter.sources import SOURCE_TYPES, FileTailSource, build_source, file_tail
from exporter.sources.base import Poll
from tests.helpers import append


class LineView(FileTailSource):
    """The source, with each poll's blocks also split into the lines the parser sees (blank
    ones dropped, too-long ones counted in ``rejected``), so the tests below state line
    semantics directly. The blocks themselves are checked in test_blocks_are_located."""

    def poll(self, now: float) -> Poll:
        poll = super().poll(now)
        for block in poll.blocks:
            for line in block.data.split(b"\n"):
                if len(line) > self.max_line_bytes:
                    poll.rejected["line_too_long"] += 1
                elif line and not line.isspace():
                    poll.lines.append(line)
        return poll


def make(pattern: Path | str, *, start_at: str = "beginning", max_line_bytes: int = 1 << 20,
         **kw: Any) -> FileTailSource:
    cfg = FileSourceConfig(name="preds", kind="predictions", path=str(pattern),
                           start_at=cast(Any, start_at), max_line_bytes=max_line_bytes)
    return LineView(cfg, **kw)


def drain(src: FileTailSource, now: float = 1000.0) -> list[bytes]:
    poll = src.poll(now)
    src.commit(poll.token)
    return poll.lines


def test_follows_appends(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"1\n2\n")
    src = make(tmp_path / "*.jsonl")
    assert drain(src) == [b"1", b"2"]
    assert drain(src) == []
    append(log, b"3\n")
    assert drain(src) == [b"3"]
    assert src.health.up and src.health.errors_total == 0 and src.health.last_success == 1000.0
    src.close()


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"id": "a"}\n{"id": ')
    src = make(log)
    assert drain(src) == [b'{"id": "a"}']
    assert src.state()["files"][0]["offset"] == len(b'{"id": "a"}\n')  # a line start
    assert drain(src) == []
    append(log, b'"b"}\n')
    assert drain(src) == [b'{"id": "b"}']
    src.close()


def test_positions_only_advance_on_commit(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"1\n2\n")
    src = make(log)
    first = src.poll(1.0)
    assert first.lines == [b"1", b"2"]
    assert src.state()["files"][0]["offset"] == 0
    src.rewind()  # the pipeline failed to apply the first poll: read it again
    again = src.poll(2.0)
    assert again.lines == [b"1", b"2"]
    src.commit(again.token)
    assert src.state()["files"][0]["offset"] == 4
    assert src.poll(3.0).lines == []
    src.close()


def test_a_poll_reads_on_before_the_one_before_is_committed(tmp_path: Path) -> None:
    """The pipeline parses one poll while it applies the one before: each poll continues where
    the last one stopped, tokens are committed in order, and a rewind goes back to the last
    committed position, whatever was read after it."""
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"1\n2\n")
    src = make(log, max_line_bytes=2, max_bytes_per_poll=3)  # one line per poll
    assert src.reads_ahead
    p1, p2, p3 = src.poll(1.0), src.poll(1.0), src.poll(1.0)
    assert (p1.lines, p2.lines, p3.lines) == ([b"1"], [b"2"], [])
    assert src.state()["files"][0]["offset"] == 0
    src.commit(p1.token)
    assert src.state()["files"][0]["offset"] == 2
    append(log, b"3\n")
    p4 = src.poll(2.0)
    assert p4.lines == [b"3"]  # after p2's line, though p2 is not committed
    src.rewind()
    assert src.poll(3.0).lines == [b"2"]  # from p1's committed end
    src.commit(p2.token)
    src.commit(p4.token)
    assert src.state()["files"][0]["offset"] == 6
    src.close()


def test_empty_lines_are_ignored(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"1\n\n  \n2\n")
    src = make(log)
    assert drain(src) == [b"1", b"2"]
    src.close()


def test_rotation_rename_and_recreate(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"a\n")
    src = make(tmp_path / "*.jsonl", rotate_wait=5.0)
    assert drain(src, 100.0) == [b"a"]
    with log.open("ab") as writer:  # the model server still holds the old file open
        log.rename(tmp_path / "app.jsonl.1")  # no longer matches the glob
        writer.write(b"b\n")
        writer.flush()
        log.write_bytes(b"c\n")  # the new file at the same path
        assert drain(src, 101.0) == [b"b", b"c"]  # old inode finished first, then the new one
        writer.write(b"d\n")  # written to the old file after we switched: still read
        writer.flush()
        assert drain(src, 103.0) == [b"d"]
    assert len(src.state()["files"]) == 2  # the old file is kept for rotate_wait
    assert drain(src, 107.0) == []
    files = src.state()["files"]
    assert [(f["path"], f["offset"]) for f in files] == [(str(log), 2)]
    src.close()


def test_rotation_to_a_name_still_matching_the_glob(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\n")
    src = make(tmp_path / "app.log*")
    assert drain(src) == [b"a", b"b"]
    append(log, b"c\n")
    log.rename(tmp_path / "app.log.1")
    log.write_bytes(b"d\n")
    assert sorted(drain(src)) == [b"c", b"d"]  # the renamed file is the same inode: no re-read
    assert drain(src) == []
    src.close()


def test_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"aaaa\nbbbb\n")
    src = make(log)
    assert drain(src) == [b"aaaa", b"bbbb"]
    shutil.copyfile(log, tmp_path / "app.jsonl.1")
    with log.open("r+b") as f:
        f.truncate(0)
    append(log, b"c\n")
    assert drain(src) == [b"c"]
    append(log, b"d\n")
    assert drain(src) == [b"d"]
    src.close()


def test_new_file_matching_the_glob_is_read_from_its_beginning(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"old\n")
    src = make(tmp_path / "*.jsonl", start_at="end")
    assert drain(src) == []  # start_at: end skips what was there at startup
    (tmp_path / "b.jsonl").write_bytes(b"new1\nnew2\n")
    (tmp_path / "ignored.txt").write_bytes(b"x\n")
    assert drain(src) == [b"new1", b"new2"]
    append(tmp_path / "a.jsonl", b"more\n")
    assert drain(src) == [b"more"]
    src.close()


def test_start_at_end_keeps_the_line_being_written(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"old\npart")
    src = make(log, start_at="end")
    assert drain(src) == []
    append(log, b"ial\n")
    assert drain(src) == [b"partial"]
    src.close()


def test_deleted_file_is_finished_then_dropped(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"a\n")
    src = make(tmp_path / "*.jsonl", rotate_wait=0.0)
    with log.open("ab") as writer:
        assert drain(src) == [b"a"]
        writer.write(b"b\nc\n")
        writer.flush()
        log.unlink()
        assert drain(src) == [b"b", b"c"]
    assert src.state() == {"files": [], "started": True}
    assert src.health.up and src.health.errors_total == 0
    src.close()


def test_missing_file_is_not_an_error(tmp_path: Path) -> None:
    src = make(tmp_path / "nothing-*.jsonl")
    poll = src.poll(5.0)
    assert poll.lines == [] and src.health.up and src.health.errors_total == 0
    assert src.health.last_success == 5.0 and src.health.polled_once
    (tmp_path / "nothing-1.jsonl").write_bytes(b"x\n")
    assert drain(src) == [b"x"]
    src.close()


def test_unreadable_path_counts_an_error_and_other_files_are_still_read(tmp_path: Path) -> None:
    (tmp_path / "good.jsonl").write_bytes(b"ok\n")
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)  # stat fails with ELOOP, an OSError even for root
    (tmp_path / "dir.jsonl").mkdir()  # not a regular file: ignored, not an error
    src = make(tmp_path / "*.jsonl")
    poll = src.poll(7.0)
    src.commit(poll.token)
    assert poll.lines == [b"ok"]
    assert not src.health.up and src.health.errors_total == 1 and src.health.last_success is None
    loop.unlink()
    src.poll(8.0)
    assert src.health.up and src.health.errors_total == 1 and src.health.last_success == 8.0
    src.close()


def test_a_24_megabyte_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    big = b'{"id": "' + b"x" * (24 << 20) + b'"}'
    log.write_bytes(b'{"id": "before"}\n' + big + b'\n{"id": "after"}\n')
    src = make(log, max_line_bytes=1 << 20, max_bytes_per_poll=32 << 20)  # the whole file in one poll
    tracemalloc.start()
    try:
        poll = src.poll(1.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    src.commit(poll.token)
    assert poll.lines == [b'{"id": "before"}', b'{"id": "after"}']
    assert poll.rejected == {"line_too_long": 1}
    assert peak < 3 * file_tail._CHUNK + (2 << 20), peak  # a read, its slices and the limit; never the line
    src.close()


def test_long_line_still_being_written_is_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"a\n" + b"y" * 300)
    src = make(log, max_line_bytes=100)
    p1 = src.poll(1.0)
    src.commit(p1.token)
    assert p1.lines == [b"a"] and p1.rejected == {"line_too_long": 1}
    assert src.state()["files"][0]["skip"] is True
    append(log, b"y" * 300)
    p2 = src.poll(2.0)
    src.commit(p2.token)
    assert p2.lines == [] and not p2.rejected
    append(log, b"yyy\nb\n")
    p3 = src.poll(3.0)
    src.commit(p3.token)
    assert p3.lines == [b"b"] and not p3.rejected
    src.close()


def test_line_of_exactly_the_limit_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"z" * 100 + b"\n" + b"w" * 101 + b"\n")
    src = make(log, max_line_bytes=100)
    poll = src.poll(1.0)
    assert poll.lines == [b"z" * 100] and poll.rejected == {"line_too_long": 1}
    src.close()


def test_bytes_per_poll_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    lines = [f"line-{i:05d}".encode() for i in range(20000)]  # 11 bytes each with newline
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    src = make(log, max_line_bytes=64, max_bytes_per_poll=50_000)
    got: list[bytes] = []
    polls = 0
    while len(got) < len(lines):
        batch = drain(src)
        assert batch, "no progress"
        assert len(batch) <= 50_000 // 11 + 1
        got += batch
        polls += 1
    assert got == lines and polls >= 4
    src.close()


def test_line_longer_than_the_poll_budget_is_skipped_over_several_polls(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"a\n" + b"q" * (5 << 20) + b"\nb\n")
    src = make(log, max_line_bytes=1000, max_bytes_per_poll=2 << 20)
    got: list[bytes] = []
    rejected = 0
    for i in range(5):
        poll = src.poll(float(i))
        src.commit(poll.token)
        got += poll.lines
        rejected += poll.rejected["line_too_long"]
    assert got == [b"a", b"b"] and rejected == 1
    src.close()


def test_binary_garbage_and_invalid_utf8_do_not_hurt_neighbours(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    good = b'{"id": "ok1", "model": "m", "prediction": 1}'
    good2 = b'{"id": "ok2", "model": "m", "prediction": 0}'
    garbage = bytes(range(256)).replace(b"\n", b"")
    log.write_bytes(good + b"\n" + garbage + b"\n" + b'{"id": "\xff\xfe"}' + b"\n" + good2 + b"\n")
    src = make(log)
    poll = src.poll(1.0)
    result = parse_predictions(poll.lines, RecordSpec(), now=1.0)
    assert list(result.batch.id) == ["ok1", "ok2"]
    assert result.invalid == {"invalid_json": 2} and result.records == 4
    src.close()


def test_restore_resumes_without_repeating_or_losing(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"1\n2\n3\n")
    src = make(tmp_path / "*.jsonl")
    assert drain(src) == [b"1", b"2", b"3"]
    append(log, b"4\n5")
    uncommitted = src.poll(2.0)  # read but never applied before the "crash"
    assert uncommitted.lines == [b"4"]
    state = json.loads(json.dumps(src.state()))  # survives a JSON checkpoint
    src.close()
    append(log, b"\n6\n")
    again = make(tmp_path / "*.jsonl", start_at="end")  # start_at does not apply after restore
    again.restore(state)
    assert drain(again) == [b"4", b"5", b"6"]
    assert drain(again) == []
    again.close()


def test_restore_after_rotation_while_down(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"a\nb\n")
    src = make(tmp_path / "*.jsonl", rotate_wait=0.0)
    assert drain(src) == [b"a", b"b"]
    state = src.state()
    src.close()
    append(log, b"c\n")  # written before the rotation, not yet read
    log.rename(tmp_path / "app.jsonl.1")
    log.write_bytes(b"d\n")
    again = make(tmp_path / "*.jsonl", rotate_wait=0.0)
    again.restore(state)
    assert drain(again) == [b"c", b"d"]  # the old inode is found beside its old path
    assert [f["path"] for f in again.state()["files"]] == [str(log)]
    again.close()


def test_restore_when_the_inode_is_gone_starts_the_current_file_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"a\nb\n")
    src = make(log)
    assert drain(src) == [b"a", b"b"]
    state = src.state()
    src.close()
    log.unlink()
    log.write_bytes(b"x\nyy\nzzz\n")  # a new file, quite possibly with the old inode number
    again = make(log)
    again.restore(state)
    assert drain(again) == [b"x", b"yy", b"zzz"]
    again.close()


def test_restore_of_a_truncated_file_starts_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"aaaa\nbbbb\n")
    src = make(log)
    assert drain(src) == [b"aaaa", b"bbbb"]
    state = src.state()
    src.close()
    with log.open("r+b") as f:
        f.truncate(0)
    append(log, b"c\n")
    again = make(log)
    again.restore(state)
    assert drain(again) == [b"c"]
    again.restore({"files": [{"path": str(log)}, "junk"]})  # malformed entries are ignored
    again.close()


def test_registry_builds_file_sources(tmp_path: Path) -> None:
    cfg = FileSourceConfig(name="f", kind="labels", path=str(tmp_path / "*.jsonl"))
    src = build_source(cfg)
    assert isinstance(src, FileTailSource) and SOURCE_TYPES["file"] is FileTailSource
    src.close()
    with pytest.raises(ValueError, match="needs a path"):
        FileTailSource(FileSourceConfig(name="x", kind="labels", path=""))


# --- property: whatever the write/poll interleaving, every complete line exactly once ------

_line = st.one_of(
    st.binary(min_size=0, max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.integers(min_value=41, max_value=200).map(lambda n: b"L" * n),  # over the 40-byte limit
)
_step: st.SearchStrategy[tuple[str, Any, int]] = st.one_of(
    st.tuples(st.just("write"), st.lists(_line, max_size=6), st.integers(0, 40)),
    # applied and committed; failed (the pipeline rewinds); or read ahead: a second poll before
    # the first is committed, then both committed in order
    st.tuples(st.just("poll"), st.sampled_from(["commit", "fail", "ahead"]), st.just(0)),
    st.tuples(st.just("restart"), st.just([]), st.just(0)),
    st.tuples(st.just("rotate"), st.just([]), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_step, max_size=25))
def test_every_complete_line_is_returned_exactly_once(steps: list[tuple[str, Any, int]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "app.jsonl"
        log.touch()
        written: list[bytes] = []  # all bytes in write order, across rotations
        unflushed = b""  # the current file's bytes not yet on disk (a line written in pieces)

        def new_source() -> FileTailSource:
            return make(tmp / "*.jsonl", max_line_bytes=40, max_bytes_per_poll=64, rotate_wait=0.0)

        src = new_source()
        got: list[bytes] = []
        rejected = 0
        rotations = 0

        def poll(how: str) -> bool:
            """One poll (two, read ahead); whether it moved any position."""
            nonlocal rejected
            polls = [src.poll(0.0)] + ([src.poll(0.0)] if how == "ahead" else [])
            if how == "fail":
                src.rewind()
                return False
            for p in polls:
                src.commit(p.token)
                got.extend(p.lines)
                rejected += p.rejected["line_too_long"]
            return any(p.token.positions for p in polls)

        for kind, arg, cut in steps:
            if kind == "write":
                data = unflushed + b"".join(line + b"\n" for line in arg)
                cut = min(cut, len(data))  # the last `cut` bytes arrive later
                append(log, data[: len(data) - cut])
                written.append(data[: len(data) - cut])
                unflushed = data[len(data) - cut:]
            elif kind == "poll":
                poll(arg)
            elif kind == "restart":
                state = json.loads(json.dumps(src.state()))
                src.close()
                src = new_source()
                src.restore(state)
            else:  # rotate: the writer finishes its line first, as one does before reopening
                append(log, unflushed)
                written.append(unflushed)
                unflushed = b""
                poll("fail")  # polls are more frequent than rotations: the file was seen
                rotations += 1
                log.rename(tmp / f"app.jsonl.{rotations}")
                log.touch()
        append(log, unflushed + b"\n")
        written.append(unflushed + b"\n")
        for _ in range(1000):
            if not poll("commit"):
                break
        src.close()

    all_lines = b"".join(written).split(b"\n")[:-1]
    expected = [line for line in all_lines if line and not line.isspace() and len(line) <= 40]
    assert got == expected
    assert rejected == sum(1 for line in all_lines if len(line) > 40)


def test_a_poll_hands_over_one_block_per_file_split_only_where_a_line_was_skipped(tmp_path: Path) -> None:
    """The 4 MiB reads of a poll are joined into one block (one scan and one batch downstream),
    each block's bytes exactly the file's at its offset; a too-long line skipped as it streamed
    past is not in any block, so the blocks before and after it stay apart."""
    log = tmp_path / "a.jsonl"
    lines = [b'{"id":"r%d","pad":"%s"}' % (i, b"p" * (i % 90)) for i in range(90_000)]  # ~5.7 MiB: 2 reads
    head = b"\n".join(lines) + b"\n"
    long_line = b"z" * (9 << 20)  # longer than two reads and than the limit: skipped while read
    tail = b'{"id":"after"}\n{"id":"last"}\n'
    log.write_bytes(head + long_line + b"\n" + tail)
    src = FileTailSource(FileSourceConfig(name="p", kind="predictions", path=str(log), max_line_bytes=1 << 20),
                         max_bytes_per_poll=32 << 20)
    poll = src.poll(1.0)
    data = log.read_bytes()
    assert [(b.offset, len(b.data)) for b in poll.blocks] == [(0, len(head) - 1), (len(data) - len(tail),
                                                                                 len(tail) - 1)]
    for b in poll.blocks:
        assert data[b.offset:b.offset + len(b.data)] == b.data
    assert poll.blocks[0].data.split(b"\n") == lines
    assert poll.rejected == {"line_too_long": 1}
    src.close()


def test_blocks_are_located(tmp_path: Path) -> None:
    """Blocks carry their file and byte offset, and a line too long to hold is located too."""
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"one\ntwo\n")
    src = FileTailSource(FileSourceConfig(name="p", kind="predictions", path=str(log), max_line_bytes=10))
    first = src.poll(1.0)
    src.commit(first.token)
    assert [(b.data, b.origin, b.offset) for b in first.blocks] == [(b"one\ntwo", str(log), 0)]
    append(log, b"x" * 50 + b"\nthree\n")
    second = src.poll(2.0)
    assert [(b.data, b.offset) for b in second.blocks] == [(b"x" * 50 + b"\nthree", 8)]
    src.commit(second.token)
    append(log, b"y" * (3 << 20))  # no newline within the chunk: skipped by the source
    third = src.poll(3.0)
    assert third.rejected == {"line_too_long": 1} and third.rejected_where == {"line_too_long": f"{log}:65"}
    src.close()


def test_budget_comes_from_the_source_config(tmp_path: Path) -> None:
    cfg = FileSourceConfig(name="p", kind="predictions", path=str(tmp_path / "a"), max_bytes_per_poll=5000)
    assert FileTailSource(cfg).max_bytes_per_poll == 1 << 20 | 1  # at least one longest line
    assert FileTailSource(FileSourceConfig(name="p", kind="predictions", path="x",
                                           max_line_bytes=100, max_bytes_per_poll=5000)).max_bytes_per_poll == 5000
    assert FileTailSource(FileSourceConfig(name="p", kind="predictions", path="x")).max_bytes_per_poll == \
        4 << 20


def test_state_is_json(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"1\n")
    src = make(tmp_path / "*.jsonl")
    drain(src)
    state = src.state()
    assert json.loads(json.dumps(state)) == state and state["started"] is True
    (entry,) = state["files"]
    st_ = os.stat(tmp_path / "a.jsonl")
    assert entry == {"path": str(tmp_path / "a.jsonl"), "dev": st_.st_dev, "ino": st_.st_ino,
                     "offset": 2, "skip": False, "head_bytes": 2,
                     "head_sha256": hashlib.sha256(b"1\n").hexdigest()}
    src.close()


def test_restore_of_a_file_truncated_and_rewritten_past_the_offset_starts_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"aaaa\nbbbb\n")
    src = make(log)
    assert drain(src) == [b"aaaa", b"bbbb"]
    state = src.state()
    src.close()
    with log.open("r+b") as f:  # copytruncate, then the writer went on while we were down
        f.truncate(0)
    append(log, b"cccc\ndddd\neeee\n")
    again = make(log)
    again.restore(state)
    assert drain(again) == [b"cccc", b"dddd", b"eeee"]
    again.close()


def test_checkpoint_before_the_first_poll_keeps_start_at_end(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"old\n")
    state = make(log, start_at="end").state()
    again = make(log, start_at="end")
    again.restore(state)
    assert drain(again) == []
    append(log, b"new\n")
    assert drain(again) == [b"new"]
    again.close()
