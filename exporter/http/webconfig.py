"""``--web.config.file``: TLS and bcrypt basic auth in the Prometheus exporter-toolkit format.

The file format is the one node_exporter, Prometheus and every exporter built on
github.com/prometheus/exporter-toolkit read, so ``promtool check web-config`` validates ours too::

    tls_server_config:
      cert_file: tls.crt              # relative paths are relative to the web config file
      key_file: tls.key
      client_ca_file: ca.crt
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...          # bcrypt, as ``htpasswd -nBC 10 "" | tr -d ':\\n'`` writes it

``load_web_config`` parses and validates the file strictly (unknown keys are errors naming their
path, like exporter-toolkit's strict YAML; the YAML is read by the config's strict loader,
``exporter.config.yaml_loader``, so a duplicate key is refused with its line) and loads the
certificates once so a broken file is refused at startup. ``apply_web_config`` then secures an
``ExporterHTTPServer`` before it serves:

* TLS: the listening socket is wrapped with an ``ssl.SSLContext`` with
  ``do_handshake_on_connect=False``; each connection's handshake runs in its own handler thread
  under the server's ``request_timeout``, so a client that connects and sends nothing (or stalls
  mid-handshake) holds one thread until the timeout, never the accept loop.
* Basic auth: ``server.authenticate`` becomes a ``BasicAuthChecker``. Unknown users are checked
  against a dummy hash of the same cost, so timing and the response do not tell a wrong user from
  a wrong password; successful checks are cached by a keyed hash (HMAC-SHA256 with a per-process
  random key, never the password itself) so a scrape every few seconds does not pay bcrypt each
  time, as exporter-toolkit does. Failed checks are never cached and bcrypt runs one at a time,
  so a flood of bad credentials costs one core at most, and cached scrapes are not held up by it.
* Headers from ``http_server_config.headers`` are added to every response (401s included).

Where Python's ``ssl`` module differs from Go's crypto/tls (documented in the README, "Securing the endpoints"):
``cipher_suites`` restricts TLS 1.2 suites (mapped to their OpenSSL names); TLS 1.3 suites are
not configurable, exactly as in Go. ``curve_preferences`` is validated but OpenSSL's default
groups are used. ``RequestClientCert`` does not ask for a certificate (it would not be used);
``RequireAnyClientCert`` is enforced as ``RequireAndVerifyClientCert`` (``ssl`` cannot require a
certificate without verifying it). ``http2`` is accepted and ignored: the server speaks HTTP/1.1.
TLS 1.0 and 1.1 are refused (OpenSSL 3 disables them anyway).

About 500 lines, over the house's 400, because it is one file format end to end: every key of
exporter-toolkit's file checked with its own message, the TLS context those keys describe, and the
handler that applies them. The bcrypt checking is apart, in ``exporter.http.basic_auth``.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from exporter.config.yaml_loader import YAMLFileError, load_yaml
from exporter.http.basic_auth import BasicAuthChecker
from exporter.http.server import ExporterHTTPServer

log = logging.getLogger(__name__)


class WebConfigError(ValueError):
    """A problem in the web config file; each line of the message starts with the key path.

    Every problem found is reported at once (``errors``, one per line). ``file`` is the web
    config file, kept out of the lines so each starts with the path inside the file, as
    ``exporter.config.ConfigError`` does.
    """

    def __init__(self, errors: str | Sequence[str], *, file: str | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.file = file
        super().__init__("\n".join(self.errors))


CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
# exporter-toolkit still accepts the old spelling of RequireAnyClientCert
_CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_REFUSED_TLS_VERSIONS = ("TLS10", "TLS11")

# Go's tls.CipherSuites() names (what exporter-toolkit accepts) -> OpenSSL names. None: a TLS 1.3
# suite, which neither Go nor Python lets a server configure; accepted and left to the defaults.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# exporter-toolkit's configurable headers; a tuple lists the only values allowed
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences")
_HTTP_KEYS = ("http2", "headers")
# keys of newer exporter-toolkit releases: refused loudly rather than silently not enforced
_UNSUPPORTED = {
    "rate_limit": "rate limiting is not supported by mlmon-exporter",
    "basic_auth_excluded_paths": "not supported: /-/healthy and /-/ready are always served without auth, "
                                 "every other endpoint requires it",
    "tls_server_config.cert": "inline PEM is not supported: use cert_file",
    "tls_server_config.key": "inline PEM is not supported: use key_file",
    "tls_server_config.client_ca": "inline PEM is not supported: use client_ca_file",
    "tls_server_config.client_allowed_sans": "client certificate SAN pinning is not supported by mlmon-exporter: "
                                             "use a dedicated client CA with RequireAndVerifyClientCert",
}
_BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    """A parsed web config. ``tls`` is None when TLS is off; no users means no basic auth."""

    file: str | None = None
    tls: TLSServerConfig | None = None
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------------------------
# Loading


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read, validate and return the web config; ``WebConfigError`` lists every problem found.

    Certificates, key and client CA are loaded once here, so an unreadable or mismatched file is
    refused at startup rather than at the first connection.
    """
    file = os.fspath(path)
    try:
        raw = load_yaml(file)
    except YAMLFileError as e:
        raise WebConfigError(str(e), file=file) from None
    cfg = parse_web_config(raw, base_dir=os.path.dirname(os.path.abspath(file)), file=file)
    if cfg.tls is not None:
        build_ssl_context(cfg.tls, file=file)
    return cfg


def parse_web_config(raw: Any, *, base_dir: str = ".", file: str | None = None) -> WebConfig:
    """Validate an already-parsed YAML document; relative file paths are joined with ``base_dir``."""
    errors: list[str] = []
    if raw is None:
        return WebConfig(file=file)
    if not isinstance(raw, Mapping):
        raise WebConfigError(f"(top level): expected a mapping, got {_kind(raw)}", file=file)
    _check_keys(raw, "", _TOP_KEYS, errors)
    tls = _parse_tls(raw.get("tls_server_config"), base_dir, errors)
    http2, headers = _parse_http(raw.get("http_server_config"), errors)
    users = _parse_users(raw.get("basic_auth_users"), errors)
    if errors:
        raise WebConfigError(errors, file=file)
    return WebConfig(file=file, tls=tls, http2=http2, headers=headers, basic_auth_users=users)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _check_keys(raw: Mapping[Any, Any], prefix: str, allowed: Sequence[str], errors: list[str]) -> None:
    for key in raw:
        path = f"{prefix}{key}"
        if path in _UNSUPPORTED:
            errors.append(f"{path}: {_UNSUPPORTED[path]}")
        elif key not in allowed:
            errors.append(f"{path}: unknown key (allowed: {', '.join(allowed)})")


def _string(raw: Mapping[Any, Any], key: str, path: str, errors: list[str]) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors.append(f"{path}.{key}: expected a string, got {_kind(value)}")
        return None
    return value


def _string_list(raw: Mapping[Any, Any], key: str, path: str, allowed: Sequence[str],
                 errors: list[str]) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(f"{path}.{key}: expected a list, got {_kind(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or item not in allowed:
            errors.append(f"{path}.{key}[{i}]: unknown value {item!r} (allowed: {', '.join(allowed)})")
        else:
            out.append(item)
    return tuple(out)


def _parse_tls(raw: Any, base_dir: str, errors: list[str]) -> TLSServerConfig | None:
    path = "tls_server_config"
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: expected a mapping, got {_kind(raw)}")
        return None
    _check_keys(raw, f"{path}.", _TLS_KEYS, errors)
    n_errors = len(errors)
    cert = _string(raw, "cert_file", path, errors)
    key = _string(raw, "key_file", path, errors)
    ca = _string(raw, "client_ca_file", path, errors)
    auth = _string(raw, "client_auth_type", path, errors)
    # exporter-toolkit: TLS is on when any of these is set; then cert and key are both required.
    # Unlike exporter-toolkit, a section that sets only other TLS keys (min_version, say) is refused
    # rather than silently serving plain HTTP: whoever wrote it meant TLS. Every key is checked.
    tls_on = not (cert is None and key is None and ca is None and auth is None)
    others = [k for k in _TLS_KEYS if k not in ("cert_file", "key_file", "client_ca_file", "client_auth_type")
              and raw.get(k) is not None]
    if not tls_on and others:
        errors.append(f"{path}: sets {', '.join(others)} but no cert_file and key_file, so TLS would be off; "
                      "add cert_file and key_file, or remove tls_server_config")
    if tls_on and cert is None:
        errors.append(f"{path}.cert_file: required when TLS is configured")
    if tls_on and key is None:
        errors.append(f"{path}.key_file: required when TLS is configured")
    auth = _CLIENT_AUTH_ALIASES.get(auth or "", auth) or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        errors.append(f"{path}.client_auth_type: unknown value {auth!r} (allowed: {', '.join(CLIENT_AUTH_TYPES)})")
    elif ca is not None and auth == "NoClientCert":
        errors.append(f"{path}.client_ca_file: a client CA is configured without a client_auth_type "
                      "(use RequireAndVerifyClientCert)")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _string(raw, name, path, errors) or default
        if value in _REFUSED_TLS_VERSIONS:
            errors.append(f"{path}.{name}: {value} is not supported (insecure, disabled in OpenSSL 3): "
                          "use TLS12 or TLS13")
        elif value not in TLS_VERSIONS:
            errors.append(f"{path}.{name}: unknown TLS version {value!r} (allowed: {', '.join(TLS_VERSIONS)})")
        versions[name] = value
    lo, hi = TLS_VERSIONS.get(versions["min_version"]), TLS_VERSIONS.get(versions["max_version"])
    if lo is not None and hi is not None and lo > hi:
        errors.append(f"{path}.max_version: {versions['max_version']} is below min_version {versions['min_version']}")
    ciphers = _string_list(raw, "cipher_suites", path, tuple(CIPHER_SUITES), errors)
    curves = _string_list(raw, "curve_preferences", path, CURVES, errors)
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        errors.append(f"{path}.prefer_server_cipher_suites: expected true or false, got {_kind(prefer)}")
        prefer = True
    if len(errors) > n_errors or not tls_on or cert is None or key is None:
        return None
    return TLSServerConfig(
        cert_file=os.path.join(base_dir, cert), key_file=os.path.join(base_dir, key),
        client_ca_file=os.path.join(base_dir, ca) if ca is not None else None,
        client_auth_type=auth, min_version=versions["min_version"], max_version=versions["max_version"],
        cipher_suites=ciphers, prefer_server_cipher_suites=prefer, curve_preferences=curves)


def _parse_http(raw: Any, errors: list[str]) -> tuple[bool, tuple[tuple[str, str], ...]]:
    path = "http_server_config"
    if raw is None:
        return True, ()
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: expected a mapping, got {_kind(raw)}")
        return True, ()
    _check_keys(raw, f"{path}.", _HTTP_KEYS, errors)
    http2 = raw.get("http2", True)
    if not isinstance(http2, bool):
        errors.append(f"{path}.http2: expected true or false, got {_kind(http2)}")
    headers_raw = raw.get("headers")
    if headers_raw is None:
        return True, ()
    if not isinstance(headers_raw, Mapping):
        errors.append(f"{path}.headers: expected a mapping, got {_kind(headers_raw)}")
        return True, ()
    headers = []
    for name, value in headers_raw.items():
        hpath = f"{path}.headers.{name}"
        if name not in HEADERS:
            errors.append(f"{hpath}: this header can not be configured (allowed: {', '.join(HEADERS)})")
        elif value is None or value == "":
            continue  # "unset if blank"
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            errors.append(f"{hpath}: expected a single-line string")
        elif HEADERS[name] and value not in HEADERS[name]:
            errors.append(f"{hpath}: invalid value {value!r} (allowed: {', '.join(HEADERS[name])})")
        else:
            headers.append((str(name), value))
    return bool(http2) if isinstance(http2, bool) else True, tuple(headers)


def _parse_users(raw: Any, errors: list[str]) -> dict[str, str]:
    path = "basic_auth_users"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: expected a mapping of user name to bcrypt hash, got {_kind(raw)}")
        return {}
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        upath = f"{path}.{user}"
        if isinstance(user, bool) or not isinstance(user, str | int):
            errors.append(f"{upath}: a user name must be a string")
            continue
        if not isinstance(hashed, str):
            errors.append(f"{upath}: expected a bcrypt hash string, got {_kind(hashed)}")
            continue
        m = _BCRYPT_RE.match(hashed)
        if m is None:
            errors.append(f"{upath}: not a bcrypt hash (expected $2y$, $2b$ or $2a$ followed by the cost, "
                          "as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints it)")
        elif not 4 <= int(m.group(1)) <= 31:
            errors.append(f"{upath}: bcrypt cost {int(m.group(1))} is out of range (4..31)")
        else:
            users[str(user)] = hashed
    return users


# ---------------------------------------------------------------------------------------------
# TLS


def _no_password() -> str:
    raise WebConfigError("encrypted private keys are not supported")


def build_ssl_context(tls: TLSServerConfig, *, file: str | None = None) -> ssl.SSLContext:
    """The server-side ``SSLContext`` for ``tls``; ``WebConfigError`` names the key at fault."""
    path = "tls_server_config"
    errors = []
    for key, name in (("cert_file", tls.cert_file), ("key_file", tls.key_file),
                      ("client_ca_file", tls.client_ca_file)):
        if name is None:
            continue
        try:
            with open(name, "rb"):
                pass
        except OSError as e:
            errors.append(f"{path}.{key}: cannot read {name}: {e.strerror or e}")
    if errors:
        raise WebConfigError(errors, file=file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except WebConfigError as e:
        raise WebConfigError(f"{path}.key_file: {e}", file=file) from None
    except ssl.SSLError as e:
        raise WebConfigError(f"{path}.cert_file/key_file: cannot load the certificate and key "
                             f"({tls.cert_file}, {tls.key_file}): {e.reason or e}", file=file) from None
    tls12 = [c for c in (CIPHER_SUITES[s] for s in tls.cipher_suites) if c is not None]
    if tls12:
        try:
            ctx.set_ciphers(":".join(tls12))
        except ssl.SSLError:
            raise WebConfigError(f"{path}.cipher_suites: none of {', '.join(tls.cipher_suites)} is available "
                                 f"in this OpenSSL ({ssl.OPENSSL_VERSION})", file=file) from None
    ctx.set_alpn_protocols(["http/1.1"])  # http2 is not served; Prometheus falls back to HTTP/1.1
    auth = tls.client_auth_type
    if auth in ("RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        if tls.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            except ssl.SSLError as e:
                raise WebConfigError(f"{path}.client_ca_file: cannot load {tls.client_ca_file}: {e.reason or e}",
                                     file=file) from None
            if ctx.cert_store_stats()["x509_ca"] == 0:
                raise WebConfigError(f"{path}.client_ca_file: {tls.client_ca_file} holds no CA certificate",
                                     file=file)
        else:  # as Go's crypto/tls does without ClientCAs: the system roots
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        ctx.verify_mode = ssl.CERT_OPTIONAL if auth == "VerifyClientCertIfGiven" else ssl.CERT_REQUIRED
    else:  # NoClientCert; RequestClientCert would ask for a certificate nothing here looks at
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------------------------
# Applying to the server


class _SecuredHandler(BaseHTTPRequestHandler):
    """Mixed in before the server's handler: TLS handshake in the connection's thread, headers."""

    web_headers: ClassVar[tuple[tuple[str, str], ...]] = ()
    tls_handshake: ClassVar[bool] = False
    _handshake_failed: bool = False

    def setup(self) -> None:
        if self.tls_handshake:
            sock = self.request
            sock.settimeout(getattr(self.server, "request_timeout", 30.0))
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError) as e:  # timeouts, resets, bad or missing client certs
                self._handshake_failed = True
                log.debug("TLS handshake failed", extra={"client": self.client_address[0], "err": str(e)})
        super().setup()

    def handle(self) -> None:
        if self._handshake_failed:
            return
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError) as e:  # a client vanishing mid-request is not our error
            log.debug("connection error", extra={"client": self.client_address[0], "err": str(e)})

    def end_headers(self) -> None:
        for name, value in self.web_headers:
            self.send_header(name, value)
        super().end_headers()


def apply_web_config(server: ExporterHTTPServer, cfg: WebConfig) -> None:
    """Secure ``server`` with ``cfg``: call once, after creating the server and before serving."""
    base = server.RequestHandlerClass
    if not (isinstance(base, type) and issubclass(base, BaseHTTPRequestHandler)):
        raise TypeError(f"unexpected request handler {base!r}")
    if issubclass(base, _SecuredHandler):
        raise RuntimeError("apply_web_config was already applied to this server")
    attrs: dict[str, Any] = {"web_headers": cfg.headers, "tls_handshake": cfg.tls is not None}
    server.RequestHandlerClass = type("SecuredHandler", (_SecuredHandler, base), attrs)
    if cfg.tls is not None:
        ctx = build_ssl_context(cfg.tls, file=cfg.file)
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        if cfg.tls.client_auth_type == "RequireAnyClientCert":
            log.warning("client_auth_type RequireAnyClientCert is enforced as RequireAndVerifyClientCert")
        if cfg.tls.curve_preferences:
            log.warning("curve_preferences is not applied: OpenSSL's default groups are used")
        log.info("TLS is enabled", extra={"client_auth_type": cfg.tls.client_auth_type,
                                          "min_version": cfg.tls.min_version, "http2": False})
    else:
        log.info("TLS is disabled")
    server.authenticate = BasicAuthChecker(cfg.basic_auth_users) if cfg.basic_auth_users else None
    if cfg.basic_auth_users:
        log.info("basic auth is enabled", extra={"users": len(cfg.basic_auth_users)})


def apply_or_report(server: ExporterHTTPServer, cfg: WebConfig | None) -> bool:
    """``apply_web_config`` for the command line (``run`` and ``demo``), before ``start()``: TLS
    wraps the listening socket. False, with the reason on stderr and the server closed, when the
    certificate cannot be loaded; True (nothing to do) without a web config."""
    if cfg is None:
        return True
    try:
        apply_web_config(server, cfg)
    except WebConfigError as e:
        print(f"mlmon-exporter: invalid web configuration {cfg.file}:\n{e}", file=sys.stderr)
        server.server_close()
        return False
    return True
