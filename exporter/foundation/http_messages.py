"""What a POST receiver answers, and the shapes of receivers and of a listener that serves them.

Receivers (the KServe source, the Alertmanager webhook of retraining) are written against
these plain types, not against the HTTP server: the runtime plugs them into ``server``, and a
source that listens on its own port is handed a ``ListenerFactory`` by whoever starts it. So
nothing below the HTTP layer imports the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


PostHandler = Callable[[dict[str, str], bytes], Response]


class Listener(Protocol):
    """A bound HTTP listener (``server.ExporterHTTPServer`` is one) that serves POST handlers."""

    post_handlers: dict[str, PostHandler]

    @property
    def server_address(self) -> Any: ...
    def serve_in_thread(self) -> threading.Thread: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


#: ``(listen address text, body-size limit) -> Listener``, bound but not yet serving; raises
#: ``OSError`` when the address cannot be bound, ``ValueError`` when it is malformed.
ListenerFactory = Callable[[str, int], Listener]
