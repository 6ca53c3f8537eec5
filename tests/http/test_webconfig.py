"""--web.config.file: TLS, mutual TLS and bcrypt basic auth on real sockets, checked by promtool
and by the real Prometheus binary scraping the secured exporter.

Certificates are made here with ``cryptography``: a CA, a server certificate for 127.0.0.1, a
client certificate from the same CA, and a client certificate from an unrelated CA.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from exporter.http.basic_auth import BasicAuthChecker
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot, Response
from exporter.http.webconfig import WebConfigError, apply_web_config, load_web_config
from exporter.report.snapshot import Family, Sample, Snapshot
from tests.helpers import free_port, require_tool, wait_for
from tests.http.pki import PASSWORD, PKI, basic, bcrypt_hash, tls_config, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "web-config.yml"
EXAMPLE_PASSWORD = "change-me-now"  # stated in the example's comment

# ---------------------------------------------------------------------------------------------
# A secured server with a small published snapshot


def _snapshot() -> Snapshot:
    fam = Family("mlmon_accuracy_ratio", "gauge", "Accuracy of labelled predictions in the window.",
                 (Sample("mlmon_accuracy_ratio", (("model", "fraud"), ("model_version", "3"), ("window", "1h")), 0.9),))
    return Snapshot((fam,), time.time(), ready=True)


@contextmanager
def serving(config_path: Path | None, *, request_timeout: float = 10.0) -> Iterator[tuple[str, ExporterHTTPServer]]:
    rendered = RenderedSnapshot()
    rendered.publish(_snapshot())
    server = ExporterHTTPServer(("127.0.0.1", 0), rendered, request_timeout=request_timeout)
    server.post_handlers["/api/v1/alertmanager"] = lambda headers, body: Response(200, b"accepted\n")
    try:
        scheme = "http"
        if config_path is not None:
            cfg = load_web_config(config_path)
            apply_web_config(server, cfg)
            scheme = "https" if cfg.tls is not None else "http"
        server.serve_in_thread()
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


FAILED_CONNECTION = (requests.exceptions.SSLError, requests.exceptions.ConnectionError)


# ---------------------------------------------------------------------------------------------
# TLS


def test_https_scrape_with_the_ca(pki: PKI, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_config(pki) + "http_server_config:\n  headers:\n"
                                               "    X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\n")
    with serving(cfg) as (url, _):
        assert url.startswith("https://")
        r = requests.get(f"{url}/metrics", verify=str(pki.ca), timeout=5)
        assert r.status_code == 200
        assert 'mlmon_accuracy_ratio{model="fraud",model_version="3",window="1h"} 0.9' in r.text
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "deny"
        with pytest.raises(requests.exceptions.SSLError):  # not trusted without our CA
            requests.get(f"{url}/metrics", timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP on the TLS port
            requests.get(url.replace("https://", "http://") + "/metrics", timeout=5)
        # the server survives both and keeps serving
        assert requests.get(f"{url}/-/healthy", verify=str(pki.ca), timeout=5).status_code == 200


def _client_context(pki: PKI, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def _handshake(url: str, ctx: ssl.SSLContext) -> tuple[str, str]:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


def test_tls_versions_and_cipher_suites(pki: PKI, tmp_path: Path) -> None:
    only13 = write_config(tmp_path, tls_config(pki, "  min_version: TLS13\n"), "only13.yml")
    with serving(only13) as (url, _):
        assert _handshake(url, _client_context(pki))[0] == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            _handshake(url, _client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    suites = write_config(tmp_path, tls_config(pki, "  max_version: TLS12\n  cipher_suites:\n"
                                                    "    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"
                                                    "    - TLS_AES_128_GCM_SHA256\n"), "suites.yml")
    with serving(suites) as (url, _):
        assert _handshake(url, _client_context(pki)) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
        client = _client_context(pki)
        client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")  # not in the server's list
        with pytest.raises(ssl.SSLError):
            _handshake(url, client)


def test_mutual_tls_require_and_verify(pki: PKI, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_config(pki, f"  client_ca_file: {pki.ca}\n"
                                                 "  client_auth_type: RequireAndVerifyClientCert\n"))
    with serving(cfg) as (url, _):
        ok = requests.get(f"{url}/metrics", verify=str(pki.ca), cert=(str(pki.client_cert), str(pki.client_key)),
                          timeout=5)
        assert ok.status_code == 200 and "mlmon_accuracy_ratio" in ok.text
        with pytest.raises(FAILED_CONNECTION):  # no client certificate
            requests.get(f"{url}/metrics", verify=str(pki.ca), timeout=5)
        with pytest.raises(FAILED_CONNECTION):  # a certificate from a CA the server does not trust
            requests.get(f"{url}/metrics", verify=str(pki.ca), cert=(str(pki.rogue_cert), str(pki.rogue_key)),
                         timeout=5)
        with pytest.raises(FAILED_CONNECTION):  # health checks need the certificate too: TLS is below HTTP
            requests.get(f"{url}/-/healthy", verify=str(pki.ca), timeout=5)
        # the handshake itself fails (TLS 1.2 makes the server's verdict part of the handshake)
        with pytest.raises(ssl.SSLError):
            _handshake(url, _client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
        again = requests.get(f"{url}/-/ready", verify=str(pki.ca), timeout=5,
                             cert=(str(pki.client_cert), str(pki.client_key)))
        assert again.status_code == 200


def test_mutual_tls_verify_if_given(pki: PKI, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_config(pki, f"  client_ca_file: {pki.ca}\n"
                                                 "  client_auth_type: VerifyClientCertIfGiven\n"))
    with serving(cfg) as (url, _):
        assert requests.get(f"{url}/metrics", verify=str(pki.ca), timeout=5).status_code == 200
        assert requests.get(f"{url}/metrics", verify=str(pki.ca), timeout=5,
                            cert=(str(pki.client_cert), str(pki.client_key))).status_code == 200
        with pytest.raises(FAILED_CONNECTION):
            requests.get(f"{url}/metrics", verify=str(pki.ca), cert=(str(pki.rogue_cert), str(pki.rogue_key)),
                         timeout=5)


def test_slow_clients_do_not_block_the_server(pki: PKI, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_config(pki) + f"basic_auth_users:\n  prometheus: '{bcrypt_hash(PASSWORD)}'\n")
    with serving(cfg, request_timeout=2.0) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # connects, sends nothing
        half = socket.create_connection(("127.0.0.1", port), timeout=10)
        half.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        try:
            time.sleep(0.2)  # both are accepted and waiting in their handshakes now
            started = time.monotonic()
            for _ in range(3):
                r = requests.get(f"{url}/metrics", verify=str(pki.ca), headers=basic("prometheus", PASSWORD),
                                 timeout=1.5)
                assert r.status_code == 200
            assert time.monotonic() - started < 1.5
            # and the server hangs up on the idle ones after its request timeout
            for s in (silent, half):
                s.settimeout(10)
                with suppress(ConnectionResetError):
                    assert s.recv(1024) == b""
        finally:
            silent.close()
            half.close()


# ---------------------------------------------------------------------------------------------
# Basic auth


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_basic_auth(pki: PKI, tmp_path: Path, prefix: str) -> None:
    cfg = write_config(tmp_path, tls_config(pki) + "http_server_config:\n  headers: {X-Frame-Options: deny}\n"
                       f"basic_auth_users:\n  prometheus: '{bcrypt_hash(PASSWORD, prefix)}'\n"
                       f"  grafana: '{bcrypt_hash('other', prefix)}'\n")
    with serving(cfg) as (url, _):
        def get(path: str, headers: dict[str, str] | None = None) -> requests.Response:
            return requests.get(f"{url}{path}", headers=headers, verify=str(pki.ca), timeout=5)

        right = get("/metrics", basic("prometheus", PASSWORD))
        assert right.status_code == 200 and "mlmon_accuracy_ratio" in right.text
        assert get("/metrics", basic("grafana", "other")).status_code == 200
        wrong_user = get("/metrics", basic("nobody", PASSWORD))
        wrong_password = get("/metrics", basic("prometheus", PASSWORD + "x"))
        other_users_password = get("/metrics", basic("prometheus", "other"))
        missing = get("/metrics")
        for r in (wrong_user, wrong_password, other_users_password, missing):
            assert r.status_code == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert r.headers["X-Frame-Options"] == "deny"  # configured headers on 401s too
        # nothing tells a wrong user from a wrong password
        assert wrong_user.content == wrong_password.content == missing.content

        def comparable(r: requests.Response) -> dict[str, str]:
            return {k: v for k, v in r.headers.items() if k != "Date"}

        assert comparable(wrong_user) == comparable(wrong_password)
        for header in ("Bearer abc", "Basic", "Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(),
                       "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode() + "x"):
            assert get("/metrics", {"Authorization": header}).status_code == 401, header
        # health and readiness stay open; the landing page and receivers do not
        assert get("/-/healthy").status_code == 200
        assert get("/-/ready").status_code == 200
        assert get("/").status_code == 401
        post = requests.post(f"{url}/api/v1/alertmanager", data=b"{}", verify=str(pki.ca), timeout=5)
        assert post.status_code == 401
        post = requests.post(f"{url}/api/v1/alertmanager", data=b"{}", verify=str(pki.ca), timeout=5,
                             headers=basic("prometheus", PASSWORD))
        assert post.status_code == 200


def test_basic_auth_without_tls(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"basic_auth_users:\n  prometheus: {bcrypt_hash(PASSWORD)}\n")
    with serving(cfg) as (url, _):
        assert url.startswith("http://")
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        assert requests.get(f"{url}/metrics", headers=basic("prometheus", PASSWORD), timeout=5).status_code == 200
        assert requests.get(f"{url}/-/healthy", timeout=5).status_code == 200


def test_successful_checks_are_cached_failures_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    checker = BasicAuthChecker({"prometheus": bcrypt_hash(PASSWORD, cost=6), "ops": bcrypt_hash("x", cost=5)})
    monkeypatch.setattr(bcrypt, "checkpw", counting)  # the module looks it up per call
    header = basic("prometheus", PASSWORD)["Authorization"]
    assert all(checker(header) for _ in range(5))
    assert len(calls) == 1  # bcrypt paid once, then the cache answers
    wrong = basic("prometheus", "guess")["Authorization"]
    assert not any(checker(wrong) for _ in range(3))
    assert len(calls) == 4  # failures are never cached
    assert not checker(basic("mallory", PASSWORD)["Authorization"])
    assert len(calls) == 5  # an unknown user still costs a bcrypt check ...
    assert calls[-1][:7] == b"$2b$06$"  # ... at the highest configured cost, like a real user
    assert not checker(None) and not checker("")
    assert len(calls) == 5  # no credentials at all: nothing to hash


def test_long_passwords_use_the_first_72_bytes_like_bcrypt_everywhere() -> None:
    long = "p" * 72
    checker = BasicAuthChecker({"u": bcrypt_hash(long)})
    assert checker(basic("u", long)["Authorization"])
    assert checker(basic("u", long + "ignored")["Authorization"])  # as htpasswd and Go compare it
    assert not checker(basic("u", long[:-1])["Authorization"])


def test_unknown_user_costs_as_much_as_a_known_one() -> None:
    checker = BasicAuthChecker({"prometheus": bcrypt_hash(PASSWORD, cost=10)})

    def duration(header: str) -> float:
        started = time.perf_counter()
        assert not checker(header)
        return time.perf_counter() - started

    # minimum of several runs, and loose bounds: other tests share the CPU; skipping bcrypt for
    # unknown users would be a thousand times faster, far outside them
    known = min(duration(basic("prometheus", f"wrong{i}")["Authorization"]) for i in range(5))
    unknown = min(duration(basic(f"nobody{i}", PASSWORD)["Authorization"]) for i in range(5))
    assert 0.25 < unknown / known < 4.0, (known, unknown)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def test_a_valid_config_parses_with_paths_relative_to_the_file(pki: PKI, tmp_path: Path) -> None:
    for f in (pki.server_cert, pki.server_key, pki.ca):
        shutil.copy(f, tmp_path)
    cfg_path = write_config(tmp_path, f"""
tls_server_config:
  cert_file: {pki.server_cert.name}
  key_file: {pki.server_key.name}
  client_ca_file: {pki.ca.name}
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  prometheus: {bcrypt_hash(PASSWORD)}
  123: {bcrypt_hash(PASSWORD)}
""")
    cfg = load_web_config(cfg_path)
    assert cfg.tls is not None
    assert cfg.tls.cert_file == str(tmp_path / pki.server_cert.name)
    assert cfg.tls.client_ca_file == str(tmp_path / pki.ca.name)
    assert cfg.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert cfg.tls.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
    assert cfg.tls.prefer_server_cipher_suites is False
    assert cfg.http2 is False
    assert cfg.headers == (("Strict-Transport-Security", "max-age=31536000"),)  # blank means unset
    assert set(cfg.basic_auth_users) == {"prometheus", "123"}
    assert "$2" not in repr(cfg)  # hashes stay out of logs and tracebacks
    # an empty file, or one with only comments, is valid and secures nothing
    for text in ("", "# nothing\n", "tls_server_config: {}\n"):
        empty = load_web_config(write_config(tmp_path, text, "empty.yml"))
        assert empty.tls is None and not empty.basic_auth_users


def test_old_require_client_cert_spelling_is_accepted(pki: PKI, tmp_path: Path) -> None:
    cfg = load_web_config(write_config(tmp_path, tls_config(pki, f"  client_ca_file: {pki.ca}\n"
                                                                 "  client_auth_type: RequireClientCert\n")))
    assert cfg.tls is not None and cfg.tls.client_auth_type == "RequireAnyClientCert"


HASH = "$2y$04$HsSCjz2L3zTXYLXPMjas5.NN93fGaQ9bG6fDYH0jxOgkd7xYmkLKi"
INVALID = [
    ("tls_config:\n  cert_file: x\n", "tls_config: unknown key"),
    ("basic_auth_user:\n  a: b\n", "basic_auth_user: unknown key"),
    ("- a\n- b\n", "(top level): expected a mapping"),
    ("tls_server_config: [a]\n", "tls_server_config: expected a mapping"),
    ("{TLS}  cert_fle: x\n", "tls_server_config.cert_fle: unknown key"),
    ("{TLS}  client_auth_type: RequireClientCertificate\n", "tls_server_config.client_auth_type: unknown value"),
    ("{TLS}  min_version: TLS10\n", "tls_server_config.min_version: TLS10 is not supported"),
    ("{TLS}  min_version: SSL3\n", "tls_server_config.min_version: unknown TLS version"),
    ("{TLS}  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.max_version: TLS12 is below"),
    ("{TLS}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "tls_server_config.cipher_suites[0]: unknown value"),
    ("{TLS}  cipher_suites: TLS_AES_128_GCM_SHA256\n", "tls_server_config.cipher_suites: expected a list"),
    ("{TLS}  curve_preferences: [CurveP224]\n", "tls_server_config.curve_preferences[0]: unknown value"),
    ("{TLS}  prefer_server_cipher_suites: yes please\n", "tls_server_config.prefer_server_cipher_suites: expected"),
    ("{TLS}  client_ca_file: {CA}\n", "tls_server_config.client_ca_file: a client CA is configured without"),
    ("{TLS}  client_allowed_sans: [prometheus]\n", "tls_server_config.client_allowed_sans: client certificate SAN"),
    # TLS settings without a certificate would serve plain HTTP: refused, naming the section
    ("tls_server_config: {min_version: TLS12}\n",
     "tls_server_config: sets min_version but no cert_file and key_file, so TLS would be off"),
    ("tls_server_config:\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
     "  prefer_server_cipher_suites: false\n",
     "tls_server_config: sets cipher_suites, prefer_server_cipher_suites but no cert_file and key_file"),
    ("tls_server_config:\n  cert_file: {CERT}\n", "tls_server_config.key_file: required"),
    ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.cert_file: required"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: {KEY}\n",
     "tls_server_config.cert_file: cannot read"),
    ("tls_server_config:\n  cert_file: {CERT}\n  key_file: {ROGUE_KEY}\n",
     "tls_server_config.cert_file/key_file: cannot load"),
    ("{TLS}  client_ca_file: {KEY}\n  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file:"),
    ("http_server_config:\n  headers:\n    Server: nginx\n", "http_server_config.headers.Server: this header can not"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options: invalid value"),
    ("http_server_config:\n  http2: 1\n", "http_server_config.http2: expected true or false"),
    ("http_server_config:\n  http1: true\n", "http_server_config.http1: unknown key"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users: expected a mapping"),
    ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus: not a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: $1$abc$def\n", "basic_auth_users.prometheus: not a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: '$2y$03$" + HASH[7:] + "'\n", "basic_auth_users.prometheus: bcrypt cost 3"),
    ("basic_auth_users:\n  prometheus:\n", "basic_auth_users.prometheus: expected a bcrypt hash string"),
    ("rate_limit: {interval: 1s, burst: 5}\n", "rate_limit: rate limiting is not supported"),
    ("tls_server_config: {cert_file: a\n", "invalid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[e for _, e in INVALID])
def test_invalid_web_configs_are_refused_with_the_path(pki: PKI, tmp_path: Path, text: str, expected: str) -> None:
    text = (text.replace("{TLS}", tls_config(pki)).replace("{CA}", str(pki.ca)).replace("{CERT}", str(pki.server_cert))
            .replace("{KEY}", str(pki.server_key)).replace("{ROGUE_KEY}", str(pki.rogue_key)))
    path = write_config(tmp_path, text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert info.value.file == str(path)
    assert expected in str(info.value), str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tls_server_config:\n  cert_file: a\n  min_version: TLS9\n"
                                  "basic_auth_users:\n  a: nope\nextra: 1\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    paths = [line.split(":", 1)[0] for line in info.value.errors]
    assert paths == ["extra", "tls_server_config.key_file", "tls_server_config.min_version", "basic_auth_users.a"]


def test_tls_settings_without_a_certificate_are_checked_whole(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tls_server_config: {min_version: TLS1.2}\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert info.value.errors == [
        "tls_server_config: sets min_version but no cert_file and key_file, so TLS would be off; add cert_file "
        "and key_file, or remove tls_server_config",
        "tls_server_config.min_version: unknown TLS version 'TLS1.2' (allowed: TLS12, TLS13)",
    ]
    empty = write_config(tmp_path, "tls_server_config: {}\n")  # nothing set: plain HTTP, as documented
    assert load_web_config(empty).tls is None


def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    """The config's strict YAML loader reads the web config too: PyYAML alone would keep the last of
    two users silently (or the last of two tls_server_config sections)."""
    path = write_config(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n  bob: '{HASH}'\n  alice: '{HASH}'\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert str(info.value) == 'invalid YAML at line 4, column 3: duplicate key "alice"'
    assert info.value.file == str(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"^cannot read: No such file or directory$"):
        load_web_config(tmp_path / "nope.yml")


def test_apply_twice_is_refused(tmp_path: Path) -> None:
    cfg = load_web_config(write_config(tmp_path, f"basic_auth_users:\n  a: '{bcrypt_hash('x')}'\n"))
    server = ExporterHTTPServer(("127.0.0.1", 0), RenderedSnapshot())
    try:
        apply_web_config(server, cfg)
        with pytest.raises(RuntimeError):
            apply_web_config(server, cfg)
    finally:
        server.server_close()


# ---------------------------------------------------------------------------------------------
# promtool agrees


def _example_dir(pki: PKI, tmp_path: Path) -> Path:
    """The example with the certificate files it names next to it (promtool loads them too)."""
    d = tmp_path / "example"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "web-config.yml")
    shutil.copy(pki.server_cert, d / "tls.crt")
    shutil.copy(pki.server_key, d / "tls.key")
    return d / "web-config.yml"


def test_promtool_checks_the_example(pki: PKI, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    example = _example_dir(pki, tmp_path)
    r = subprocess.run([promtool, "check", "web-config", str(example)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = load_web_config(example)
    assert cfg.tls is not None and cfg.tls.cert_file == str(example.parent / "tls.crt")
    checker = BasicAuthChecker(cfg.basic_auth_users)
    assert checker(basic("prometheus", EXAMPLE_PASSWORD)["Authorization"])  # the comment tells the truth
    # and without the certificate files both refuse it the same way
    r = subprocess.run([promtool, "check", "web-config", str(EXAMPLE)], capture_output=True, text=True)
    with pytest.raises(WebConfigError, match="cert_file: cannot read"):
        load_web_config(EXAMPLE)
    assert r.returncode != 0


@pytest.mark.parametrize("extra", [
    "  client_ca_file: {CA}\n  client_auth_type: RequireAndVerifyClientCert\n",
    "  client_ca_file: {CA}\n  client_auth_type: VerifyClientCertIfGiven\n  min_version: TLS13\n",
    "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
    "  curve_preferences: [X25519]\n",
    "  client_auth_type: NoClientCert\n  prefer_server_cipher_suites: false\n"
    "http_server_config: {http2: false, headers: {X-Content-Type-Options: nosniff}}\n",
    "  client_ca_file: {CA}\n  client_auth_type: NoClientCert\n",  # both refuse this one
    "  client_auth_type: Bogus\n",
    "  cipher_suites: [TLS_NOT_A_SUITE]\n",
    "http_server_config: {headers: {X-Frame-Options: maybe}}\n",
    "basic_auth_users: {a: notahash}\n",
    "tls_cert: x\n",
])
def test_promtool_and_we_agree(pki: PKI, tmp_path: Path, extra: str) -> None:
    promtool = require_tool("promtool")
    path = write_config(tmp_path, tls_config(pki, extra.replace("{CA}", str(pki.ca))))
    r = subprocess.run([promtool, "check", "web-config", str(path)], capture_output=True, text=True)
    try:
        load_web_config(path)
        ours = True
    except WebConfigError:
        ours = False
    assert ours == (r.returncode == 0), r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# The real Prometheus scraping the secured exporter


@contextmanager
def _prometheus(tmp: Path, scrape_configs: list[dict[str, Any]]) -> Iterator[str]:
    """The real Prometheus on 127.0.0.1 with temp storage; stopped by PID, its log shown on failure."""
    prometheus, promtool = require_tool("prometheus"), require_tool("promtool")
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                      "scrape_configs": scrape_configs}))
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log_path = tmp / "prometheus.log"
    for _attempt in range(3):  # a probed free port can be taken before Prometheus binds it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/-/ready", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            if proc.poll() is not None and "address already in use" in log_path.read_text():
                continue
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                yield url
            except BaseException:
                print(log_path.read_text())
                raise
            return
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    raise AssertionError("prometheus could not bind a free port:\n" + log_path.read_text())


def _targets(prom: str) -> dict[str, dict[str, Any]]:
    r = requests.get(f"{prom}/api/v1/targets", timeout=2).json()
    return {t["labels"]["job"]: t for t in r["data"]["activeTargets"]}


def _up(prom: str, job: str) -> float | None:
    r = requests.get(f"{prom}/api/v1/query", params={"query": f'up{{job="{job}"}}'}, timeout=2).json()
    assert r["status"] == "success", r
    result = r["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_real_prometheus_scrapes_the_secured_exporter(pki: PKI, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tls_config(pki, f"  client_ca_file: {pki.ca}\n"
                                                 "  client_auth_type: RequireAndVerifyClientCert\n")
                       + f"basic_auth_users:\n  prometheus: '{bcrypt_hash(PASSWORD, cost=10)}'\n")
    (tmp_path / "password").write_text(PASSWORD)
    with serving(cfg) as (url, _):
        target = url.removeprefix("https://")
        tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        jobs: list[dict[str, Any]] = [
            {"job_name": "secured", "scheme": "https", "tls_config": tls,
             "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / "password")},
             "static_configs": [{"targets": [target]}]},
            {"job_name": "wrong-password", "scheme": "https", "tls_config": tls,
             "basic_auth": {"username": "prometheus", "password": "guess"},
             "static_configs": [{"targets": [target]}]},
            {"job_name": "no-client-cert", "scheme": "https", "tls_config": {"ca_file": str(pki.ca)},
             "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / "password")},
             "static_configs": [{"targets": [target]}]},
        ]
        with _prometheus(tmp_path, jobs) as prom:
            # SD updates are throttled to 5 s: wait for a real scrape of every job, not for /-/ready
            wait_for(lambda: all(_up(prom, j["job_name"]) is not None for j in jobs), 40, "first scrapes")
            assert wait_for(lambda: _up(prom, "secured") == 1, 20, "secured target up") is True
            value = requests.get(f"{prom}/api/v1/query", params={"query": 'mlmon_accuracy_ratio{job="secured"}'},
                                 timeout=2).json()["data"]["result"]
            assert float(value[0]["value"][1]) == pytest.approx(0.9)
            targets = _targets(prom)
            assert _up(prom, "wrong-password") == 0
            assert "401" in targets["wrong-password"]["lastError"]
            assert _up(prom, "no-client-cert") == 0
            assert targets["no-client-cert"]["lastError"]
