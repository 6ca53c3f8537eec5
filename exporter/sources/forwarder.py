"""Re-send received KServe CloudEvents, unchanged, to other receivers (``forward_to``).

An InferenceService has a single logger URL, so the exporter can pass each event on (to TrustyAI,
a message dumper, another exporter). Forwarding must never slow the receiver down: ``submit``
only puts the event on a bounded queue per target and returns at once; one daemon thread per
target sends them in order. A full queue drops the event (counted in ``stats[url].dropped``).

Each event is sent with the same body and the same headers, minus those that belong to the
hop rather than the event (``Host``, ``Content-Length``, ``Connection``, ``Transfer-Encoding``,
...) and the credentials the logger sent to us (``Authorization``, ``Cookie``), which are not
the target's business. Network errors, timeouts and answers 408, 429 and 5xx are retried up to
``max_attempts`` times in all with exponential backoff (``backoff``, doubling); other 4xx answers
are final. Failures are logged at most once a minute per target.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

from exporter.sources.redaction import safe_url

log = logging.getLogger(__name__)

HOP_HEADERS = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate", "proxy-connection", "authorization",
    "cookie", "expect", "accept-encoding",
})
RETRY_STATUS = frozenset({408, 429})


@dataclass
class ForwardStats:
    forwarded: int = 0  # delivered (2xx/3xx)
    failed: int = 0  # given up after the last attempt, or refused with a final 4xx
    dropped: int = 0  # queue full
    retries: int = 0


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


_STOP = object()


class _Target:
    def __init__(self, url: str, session: requests.Session | None, queue_size: int, timeout: float,
                 max_attempts: int, backoff: float, stop: threading.Event) -> None:
        self.url = url
        self.log_url = safe_url(url)
        self.session = session
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.stop = stop
        self.stats = ForwardStats()
        self.thread: threading.Thread | None = None
        self._last_log = -1e18

    def run(self) -> None:
        own = self.session is None
        session = self.session or requests.Session()
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    return
                assert isinstance(item, tuple)
                headers, body = item
                try:
                    self._send(session, headers, body)
                finally:
                    self.queue.task_done()
        finally:
            if own:
                session.close()

    def _send(self, session: requests.Session, headers: dict[str, str], body: bytes) -> None:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            problem: str
            try:
                resp = session.post(self.url, data=body, headers=headers, timeout=self.timeout)
                resp.close()
            except requests.RequestException as e:
                problem = type(e).__name__
            else:
                if resp.status_code < 400:
                    self.stats.forwarded += 1
                    return
                problem = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code not in RETRY_STATUS:
                    break
            if attempt == self.max_attempts or self.stop.wait(delay):
                break
            self.stats.retries += 1
            delay *= 2
        self.stats.failed += 1
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning("forwarding a KServe event to %s failed: %s (%d failed so far)",
                        self.log_url, problem, self.stats.failed)


class Forwarder:
    """Forward events to ``urls``; ``session`` (shared by all targets) is injectable for tests."""

    def __init__(self, urls: Sequence[str], session: requests.Session | None = None, *,
                 queue_size: int = 1000, timeout: float = 5.0, max_attempts: int = 3,
                 backoff: float = 0.5) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self.targets = [_Target(u, session, queue_size, timeout, max_attempts, backoff, self._stop)
                        for u in urls]

    @property
    def stats(self) -> dict[str, ForwardStats]:
        return {t.url: t.stats for t in self.targets}

    def submit(self, headers: Mapping[str, str], body: bytes) -> None:
        """Queue the event for every target; never blocks."""
        if self._closed:
            return
        fwd = forwardable_headers(headers)
        for t in self.targets:
            self._ensure_started(t)
            try:
                t.queue.put_nowait((fwd, body))
            except queue.Full:
                t.stats.dropped += 1

    def _ensure_started(self, t: _Target) -> None:
        if t.thread is None:
            with self._lock:
                if t.thread is None and not self._closed:
                    t.thread = threading.Thread(target=t.run, name=f"kserve-forward-{t.log_url}", daemon=True)
                    t.thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was handled (for tests and shutdown); True if all were."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t.queue.unfinished_tasks == 0 for t in self.targets):
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads: events still queued are sent if time allows, retries are cut short."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + timeout
        for t in self.targets:
            if t.thread is not None:
                with contextlib.suppress(queue.Full):
                    t.queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in self.targets:
            if t.thread is not None:
                t.thread.join(max(0.0, deadline - time.monotonic()))

