"""Work on items in order, with the first step of the next few done on a second thread.

The pipeline parses a poll (the compiled line scanner, which runs without the GIL) while it
applies the one before (join, windows, drift: the pipeline thread's state). Parsing is about half
of ingest, so on two cores the two halves overlap. ``in_order`` is that loop, kept apart from what
it runs: results are applied strictly in the order of the items, an exception from either step
ends the loop (after the thread has finished the item it was parsing; the ones queued behind it
are dropped), and at most ``depth`` items wait parsed or being parsed besides the one applied,
which bounds the memory they hold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Parsed = TypeVar("Parsed")


def in_order(items: Iterable[Item], parse: Callable[[Item], Parsed], apply: Callable[[Item, Parsed], None],
             depth: int) -> int:
    """``apply(item, parse(item))`` for every item, in order, with ``parse`` run on a thread of its
    own up to ``depth`` items ahead of ``apply``; how many items were applied. ``items`` is read
    on the calling thread, one item ahead of the last one handed to ``parse``."""
    applied = 0
    parsing = ThreadPoolExecutor(1, thread_name_prefix="mlmon-parse")
    try:
        queued: deque[tuple[Item, Future[Parsed]]] = deque()
        for item in items:
            queued.append((item, parsing.submit(parse, item)))
            if len(queued) > depth:
                first, parsed = queued.popleft()
                apply(first, parsed.result())
                applied += 1
        while queued:
            first, parsed = queued.popleft()
            apply(first, parsed.result())
            applied += 1
    finally:  # after a failure, what is queued is not parsed; what is being parsed is waited for
        parsing.shutdown(wait=True, cancel_futures=True)
    return applied
