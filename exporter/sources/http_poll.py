"""``type: http``: poll a label (or prediction) store over HTTP with a cursor.

Each poll sends ``GET url?<cursor_param>=<cursor>`` (no parameter before the first cursor is
known) and accepts three body shapes:

* a JSON array of records;
* a page ``{"items": [...], "next_cursor": "..."}``: pages are followed within one poll, up to
  ``max_pages_per_poll`` requests or ``max_bytes_per_poll`` bytes of bodies (at least one page
  is read), and the next poll resumes from the last ``next_cursor``;
* JSON lines (one record per line; returned as raw lines so a bad line is counted on its own).

A single JSON object without ``items`` is one record. An empty body (e.g. ``204``) is an empty
page.

**Cursor.** A response with a non-empty ``next_cursor`` sets the cursor to it. Paging inside one
poll stops at an empty page, at a ``next_cursor`` equal to the one just sent, when the response
has no ``next_cursor``, or after ``max_pages_per_poll`` requests (then the source is due again at
once, and its ``Poll.backlog`` makes the pipeline read on within the cycle, to work off the
backlog). A response without ``next_cursor`` makes the cursor the newest record timestamp seen in
the poll (the ``timestamp`` field, through the source's field mapping, parsed as the records
module does), sent back as the record wrote it (text as is, numbers as JSON numbers); a timestamp
cursor never moves backwards. Servers that page should return a ``next_cursor`` on the last page
too (the position after it): then nothing is fetched twice. An inclusive timestamp cursor re-reads
the newest records on the next poll; the pipeline recognises their ids and counts them as
``duplicate`` instead of applying them twice. Without ``cursor_param`` no cursor is sent and pages
are not followed.

**Commit.** ``poll`` never moves the cursor: it returns a token with the position the pages it
read reached, and ``commit(token)`` (called by the pipeline after it applied them) makes it the
committed cursor. ``state()`` / ``restore()`` carry only the committed cursor, so a crash
between a poll and its commit re-reads those pages instead of losing them, and a checkpoint
never holds a cursor past what was applied.

**Failures** (connection refused, timeouts, TLS errors, HTTP status >= 400, a body that is not
JSON / JSON lines, or larger than ``max_response_bytes``): ``health.up`` becomes False,
``health.errors_total`` counts every failed request, and the next attempt waits an exponential
backoff with jitter: after the n-th consecutive failure a delay drawn uniformly from
``[d/2, d]`` with ``d = min(interval * 2**n, interval * 10)``; so a failing store is never asked
more often than every ``interval``, and at least every ``interval * 10``. A failure after some
pages of a poll were read keeps those pages (their token covers exactly them). Header values and
credentials are never logged; the URL is logged without its query string or user info.

**TLS / proxies.** ``tls.ca_file`` is the CA bundle to verify against (default: the system
bundle; ``tls.insecure_skip_verify: true`` disables verification), ``tls.cert_file`` /
``tls.key_file`` a client certificate. The session honours ``HTTP(S)_PROXY`` / ``NO_PROXY`` from
the environment (``trust_env``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import InsecureRequestWarning

from exporter.config import HTTPSourceConfig
from exporter.ingest.timestamps import parse_timestamp
from exporter.sources.base import Poll, Source
from exporter.sources.redaction import safe_url

log = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 64 << 20
BACKOFF_CAP_FACTOR = 10.0
_JSON_LINES_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/jsonlines", "application/json-lines",
})
_CHUNK = 1 << 16
_MISSING: Any = object()


class FetchError(Exception):
    """A failed request; the message is safe to log (no headers, no credentials)."""


@dataclass(frozen=True)
class HTTPToken:
    """The cursor the pages of one poll reached; ``kind`` is ``next`` (server cursor) or ``timestamp``."""

    cursor: str | None
    kind: str | None


@dataclass
class Page:
    """One decoded response body."""

    objects: list[Any] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    next_cursor: str | None = None
    size: int = 0  # bytes of the body, for max_bytes_per_poll


def decode_body(body: bytes, content_type: str = "") -> Page:
    """Decode a response body into records; ``ValueError`` when it is none of the accepted shapes."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if not body.strip():
        return Page()
    if mime not in _JSON_LINES_TYPES:
        try:
            value = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            value = _MISSING
        if value is not _MISSING:
            return _page_of(value)
    lines = [line.rstrip(b"\r") for line in body.split(b"\n")]
    lines = [line for line in lines if line.strip()]
    if mime not in _JSON_LINES_TYPES:
        # Not one JSON document: JSON lines only if the first line is JSON, else garbage.
        try:
            json.loads(lines[0].decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise ValueError("body is neither JSON nor JSON lines") from e
    return Page(lines=lines)


def _page_of(value: Any) -> Page:
    if isinstance(value, list):
        return Page(objects=value)
    if isinstance(value, dict):
        if "items" not in value:
            return Page(objects=[value])
        items = value["items"]
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ValueError('"items" must be an array')
        raw = value.get("next_cursor")
        if raw is None or raw == "":
            cursor = None
        elif isinstance(raw, str):
            cursor = raw
        elif isinstance(raw, int) and not isinstance(raw, bool):
            cursor = str(raw)
        else:
            raise ValueError('"next_cursor" must be a string or an integer')
        return Page(objects=items, next_cursor=cursor)
    raise ValueError("JSON body must be an array, an object or JSON lines")


def _cursor_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw)


class HTTPSource(Source):
    """A ``type: http`` source.

    ``session`` is the ``requests.Session`` to use (a new one with ``trust_env`` otherwise; an
    injected one is used as given and not closed by ``close()``). ``rng`` draws the backoff
    jitter (inject a seeded ``random.Random`` in tests). ``max_response_bytes`` bounds one
    response body.
    """

    config_type = HTTPSourceConfig
    config: HTTPSourceConfig

    def __init__(self, config: HTTPSourceConfig, session: requests.Session | None = None, *,
                 rng: random.Random | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        super().__init__(config)
        if not config.url:
            raise ValueError(f"source {config.name!r}: an http source needs a url")
        self.url = config.url
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            session.trust_env = True
        self.session = session
        self.rng = rng if rng is not None else random.Random()
        self.max_response_bytes = max_response_bytes
        self.interval = config.interval
        self._ts_path = tuple(config.fields.get("timestamp", "timestamp").split("."))
        tls = config.tls
        self._verify: bool | str = False if tls.insecure_skip_verify else (tls.ca_file or True)
        self._cert = (tls.cert_file, tls.key_file) if tls.cert_file and tls.key_file else None
        self._auth = (config.basic_auth.username, config.basic_auth.password) if config.basic_auth else None
        self._log_url = safe_url(self.url)
        if tls.insecure_skip_verify:
            log.warning("source %s: TLS certificate verification is disabled for %s", self.name, self._log_url)
        # committed position
        self.cursor: str | None = None
        self.cursor_kind: str | None = None
        # scheduling
        self.next_due = -math.inf
        self.failures = 0  # consecutive failed polls
        self.last_error: str | None = None

    # --- Source interface -----------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def poll(self, now: float) -> Poll:
        cursor, kind = self.cursor, self.cursor_kind
        objects: list[Any] = []
        lines: list[bytes] = []
        newest: tuple[float, Any] | None = None
        error: str | None = None
        backlog = False
        follow = self.config.cursor_param is not None
        by_timestamp = False  # the last response had no next_cursor
        line_origins: list[tuple[int, str]] = []
        object_origins: list[tuple[int, str]] = []
        read = 0
        for number in range(1, self.config.max_pages_per_poll + 1):
            try:
                page = self._get(cursor)
            except FetchError as e:
                error = str(e)
                break
            where = f"page {number} of the poll (cursor {cursor!r})" if cursor is not None else f"page {number}"
            if page.lines:
                line_origins.append((len(lines), where))
            if page.objects:
                object_origins.append((len(objects), where))
            records = page.objects or [self._decode_line(line) for line in page.lines]
            objects.extend(page.objects)
            lines.extend(page.lines)
            newest = self._newest(records, newest)
            read += page.size
            if page.next_cursor is None:
                by_timestamp = True
                break
            sent, cursor, kind = cursor, page.next_cursor, "next"
            if not records or page.next_cursor == sent or not follow:
                break
            if read >= self.config.max_bytes_per_poll:
                backlog = True  # byte budget spent while the server still had pages
                break
        else:
            backlog = True  # page limit reached while the server still had pages
        if by_timestamp and newest is not None:
            cursor, kind = self._advance_timestamp(cursor, kind, newest)
        self.health.polled_once = True
        if error is None:
            self._succeeded(now, backlog)
        else:
            self._failed(now, error)
        origins = line_origins + [(len(lines) + i, where) for i, where in object_origins]
        # a backlog (never after an error: that ends the paging first) also tells the pipeline to
        # read on in this cycle and the runtime not to wait for the interval
        return Poll(lines=lines, objects=objects, origins=origins, token=HTTPToken(cursor, kind),
                    backlog=backlog)

    def commit(self, token: Any) -> None:
        if token is None:
            return
        if not isinstance(token, HTTPToken):
            raise TypeError(f"not an http source token: {token!r}")
        self.cursor, self.cursor_kind = token.cursor, token.kind

    def state(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "cursor_kind": self.cursor_kind}

    def restore(self, state: dict[str, Any]) -> None:
        cursor = state.get("cursor")
        kind = state.get("cursor_kind")
        if cursor is not None and not isinstance(cursor, str):
            log.warning("source %s: ignoring malformed checkpointed cursor", self.name)
            return
        self.cursor = cursor
        self.cursor_kind = kind if kind in ("next", "timestamp") else ("next" if cursor is not None else None)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    # --- internals ----------------------------------------------------------------------------------

    def _advance_timestamp(self, cursor: str | None, kind: str | None,
                           newest: tuple[float, Any]) -> tuple[str | None, str | None]:
        """The timestamp cursor after a poll whose newest record is ``newest`` (never backwards)."""
        if kind == "timestamp" and cursor is not None:
            current = parse_timestamp(cursor, 0.0)
            if not math.isnan(current) and current >= newest[0]:
                return cursor, kind
        return _cursor_text(newest[1]), "timestamp"

    def _newest(self, records: list[Any], newest: tuple[float, Any] | None) -> tuple[float, Any] | None:
        for rec in records:
            raw = rec
            for key in self._ts_path:
                raw = raw.get(key, _MISSING) if isinstance(raw, dict) else _MISSING
            if raw is _MISSING or raw is None:
                continue
            t = parse_timestamp(raw, math.nan)
            if not math.isnan(t) and (newest is None or t > newest[0]):
                newest = (t, raw)
        return newest

    @staticmethod
    def _decode_line(line: bytes) -> Any:
        try:
            return json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):
            return None

    def _get(self, cursor: str | None) -> Page:
        param = self.config.cursor_param
        params = {param: cursor} if param is not None and cursor is not None else None
        started = time.monotonic()
        deadline = started + self.config.timeout
        try:
            with self._quiet_insecure():
                resp = self.session.get(
                    self.url, params=params, headers=self.config.headers or None, auth=self._auth,
                    timeout=self.config.timeout, verify=self._verify, cert=self._cert, stream=True,
                )
            with resp:
                if resp.status_code >= 400:
                    raise FetchError(f"HTTP {resp.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise FetchError(f"response larger than {self.max_response_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(f"response not complete within {self.config.timeout:g}s")
                    chunks.append(chunk)
                body = b"".join(chunks)
                content_type = resp.headers.get("Content-Type", "")
        except requests.Timeout:
            raise FetchError(f"timeout after {self.config.timeout:g}s") from None
        except requests.exceptions.SSLError:
            raise FetchError("TLS error") from None
        except requests.ConnectionError:
            raise FetchError("connection failed") from None
        except (requests.RequestException, OSError) as e:
            raise FetchError(f"request failed ({type(e).__name__})") from None
        try:
            page = decode_body(body, content_type)
            page.size = len(body)
            return page
        except (ValueError, UnicodeDecodeError) as e:
            raise FetchError(f"invalid body: {e}") from None

    @contextmanager
    def _quiet_insecure(self) -> Iterator[None]:
        """urllib3 warns on every unverified request; the choice was logged once at startup."""
        if self._verify is False:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                yield
        else:
            yield

    def _succeeded(self, now: float, backlog: bool) -> None:
        if self.failures:
            log.info("source %s: %s reachable again after %d failed polls", self.name, self._log_url, self.failures)
        self.failures = 0
        self.last_error = None
        self.health.up = True
        self.health.last_success = now
        self.next_due = now if backlog else now + self.interval

    def _failed(self, now: float, error: str) -> None:
        self.failures += 1
        self.health.errors_total += 1
        self.health.up = False
        if self.failures == 1 or error != self.last_error:
            log.warning("source %s: polling %s failed: %s", self.name, self._log_url, error)
        self.last_error = error
        self.next_due = now + self.backoff(self.failures)

    def backoff(self, failures: int) -> float:
        """Delay before the next attempt after ``failures`` consecutive failures."""
        cap = self.interval * BACKOFF_CAP_FACTOR
        d = min(self.interval * 2.0 ** min(failures, 64), cap)
        return d / 2 + self.rng.random() * d / 2
