"""HTTP basic auth against bcrypt hashes, as exporter-toolkit checks it: unknown users cost as much
as known ones (a dummy hash of the same cost), successful checks are cached under a keyed hash
(never the password), failed ones never, and bcrypt runs one at a time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

BCRYPT_MAX_PASSWORD = 72  # bcrypt (and htpasswd, and Go) only ever use the first 72 bytes


def _normalise_hash(hashed: str) -> bytes:
    # $2y$ (htpasswd, PHP) and $2b$ are the same algorithm; say $2b$ whatever the bcrypt build accepts
    return ("$2b$" + hashed[4:] if hashed.startswith("$2y$") else hashed).encode("ascii")


def _dummy_hash(cost: int) -> bytes:
    """A well-formed hash of a random password, checked for unknown users so they cost exactly as
    much as known ones (no user enumeration by timing). Hashed at cost 4, then relabelled: bcrypt
    then runs at ``cost`` and simply never matches, without paying ``cost`` once at startup."""
    hashed = bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(4))
    return hashed[:4] + f"{cost:02d}".encode() + hashed[6:]


def parse_basic_auth(header: str | None) -> tuple[bytes, bytes] | None:
    """``Authorization: Basic base64(user:password)`` -> (user, password), or None if malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


class BasicAuthChecker:
    """``Authorization`` header -> bool against bcrypt hashes; an ``Authenticator`` for the server."""

    def __init__(self, users: Mapping[str, str], *, cache_size: int = 1024) -> None:
        if not users:
            raise ValueError("BasicAuthChecker needs at least one user")
        self._users = {name.encode("utf-8"): _normalise_hash(h) for name, h in users.items()}
        self._dummy = _dummy_hash(max(int(h[4:6]) for h in users.values()))
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # as exporter-toolkit: one bcrypt at a time

    def __call__(self, header: str | None) -> bool:
        creds = parse_basic_auth(header)
        if creds is None:
            return False
        user, password = creds
        password = password[:BCRYPT_MAX_PASSWORD]
        key = hmac.new(self._key, len(user).to_bytes(4, "big") + user + password, hashlib.sha256).digest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        hashed = self._users.get(user)
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy)
            except ValueError:  # a hash this bcrypt build refuses: a failed login, not a crash
                ok = False
        if not ok or hashed is None:
            return False
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return True
