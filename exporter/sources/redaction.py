"""What of a source's settings may appear in logs: URLs without their credentials.

The HTTP source and the KServe forwarder both log the URLs they talk to; neither should import
the other for that.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: fit for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
