"""Listen addresses as Prometheus exporters take them: ``host:port``, ``:port``, ``[v6]:port``.

Two steps, because they fail differently: ``split_listen_address`` is pure syntax (used by the
config validator and the command line, so a typo is one clear line before anything starts), and
``resolve_listen_address`` turns the host into something a socket can bind (a hostname is looked
up, IPv4 preferred as Go's ``net.Listen`` does; an empty host means every interface, IPv6 and
IPv4 on one dual-stack socket where the host has IPv6).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

EXAMPLES = "host:port, :port or [v6]:port, e.g. :9741, 127.0.0.1:9741, localhost:9741, [::1]:9741"


class ListenAddressError(ValueError):
    """A listen address that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class BindAddress:
    family: socket.AddressFamily
    host: str  # numeric; '' never: the wildcard is '::' or '0.0.0.0'
    port: int
    dual_stack: bool = False  # '::' that also accepts IPv4 (IPV6_V6ONLY off)


def split_listen_address(address: str) -> tuple[str, int]:
    """``'[::1]:9741'`` -> ``('::1', 9741)``; ``':9741'`` -> ``('', 9741)``. Syntax only, no lookups."""
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise ListenAddressError(f"invalid listen address {address!r}: want {EXAMPLES}")
        host, port_text = text[1:end], text[end + 2:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ListenAddressError(f"invalid listen address {address!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ListenAddressError(f"invalid listen address {address!r}: missing port; want {EXAMPLES}")
        if ":" in host:
            raise ListenAddressError(f"invalid listen address {address!r}: put an IPv6 address in brackets, "
                                     f"e.g. [{host}]:{port_text or 9741}")
        if any(c.isspace() or c in "[]/" for c in host):
            raise ListenAddressError(f"invalid listen address {address!r}: bad host {host!r}")
    if not port_text.isascii() or not port_text.isdigit():
        raise ListenAddressError(f"invalid listen address {address!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ListenAddressError(f"invalid listen address {address!r}: port {port} is over 65535")
    return host, port


def resolve_listen_address(host: str, port: int) -> BindAddress:
    """Where to bind ``(host, port)``; ``ListenAddressError`` when a hostname does not resolve."""
    if host in ("", "*"):
        if socket.has_ipv6 and _ipv6_usable():
            return BindAddress(socket.AF_INET6, "::", port, dual_stack=True)
        return BindAddress(socket.AF_INET, "0.0.0.0", port)
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return BindAddress(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise ListenAddressError(f"cannot listen on {host}:{port}: cannot resolve {host!r}: {reason}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as Go's net.Listen
    family, _, _, _, sockaddr = infos[0]
    return BindAddress(socket.AddressFamily(family), str(sockaddr[0]), port)


def _ipv6_usable() -> bool:
    """Whether an IPv6 socket can be bound here (containers often have IPv6 switched off)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::", 0))
    except OSError:
        return False
    return True
