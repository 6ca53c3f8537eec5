"""Real servers for tests: a recording HTTP endpoint, and Prometheus + Alertmanager on loopback.

``RecordingServer`` is a real HTTP server in a thread that records every request and answers
with scripted responses (status, delay), standing in for a retraining pipeline or any other
webhook target.

``Stack`` runs the Debian binaries (``prometheus``, ``prometheus-alertmanager``) as child
processes bound to 127.0.0.1 with temp storage, Alertmanager's gossip disabled
(``--cluster.listen-address=``), each process logging to a file in the stack's directory.
Readiness is real: ``/-/ready``, then the scrape target ``up == 1`` and Alertmanager present in
Prometheus' ``activeAlertmanagers`` (Prometheus throttles service discovery to 5 s, so a rule
could otherwise fire before any Alertmanager is known). ``require_stack_binaries`` fails under
``CI`` and skips elsewhere when a binary is missing. Processes are stopped by PID (SIGTERM, then
SIGKILL after 10 s).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.helpers import free_port
from tests.helpers import missing as missing_tool

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------
# A recording HTTP server
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok\n"
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class RecordingServer:
    """A real HTTP server on 127.0.0.1 that records requests; ``replies`` are used in order,
    then ``default``. Use as a context manager, or call ``start``/``stop``."""

    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                               body, time.monotonic())
                with owner._lock:
                    owner.requests.append(rec)
                    reply = owner.replies.pop(0) if owner.replies else owner.default
                    owner._lock.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for k, v in reply.headers:
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout): fine
                    pass

            do_POST = do_GET = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="recording-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def wait_for_count(self, n: int, timeout: float) -> list[Recorded]:
        """Wait until at least ``n`` requests arrived; returns them (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {n} requests within {timeout}s, got {len(self.requests)}")
                self._lock.wait(remaining)
            return list(self.requests)


# ----------------------------------------------------------------------------------------------
# Prometheus + Alertmanager
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    promtool: str
    alertmanager: str
    amtool: str


def _which(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n)
        if path is not None:
            return path
    return None


def require_stack_binaries() -> Binaries:
    """The real binaries; missing ones fail the test under CI (``CI`` set) and skip it elsewhere."""
    found = {
        "prometheus": _which("prometheus"),
        "promtool": _which("promtool"),
        # Debian renames Alertmanager's binary
        "alertmanager": _which("prometheus-alertmanager", "alertmanager"),
        "amtool": _which("amtool"),
    }
    missing = [k for k, v in found.items() if v is None]
    if missing:
        missing_tool(f"{', '.join(missing)}: apt-get install --no-install-recommends "
                     "prometheus prometheus-alertmanager")
    return Binaries(**{k: v for k, v in found.items() if v is not None})


class ProcessDied(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Stack:
    """Child processes on loopback with their logs in ``directory``; ``close`` stops them by PID."""

    def __init__(self, directory: Path, binaries: Binaries) -> None:
        self.dir = directory
        self.bin = binaries
        self.procs: list[Proc] = []
        self.prometheus_url: str | None = None
        self.alertmanager_url: str | None = None

    # -- processes ---------------------------------------------------------------------------------
    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        log = self.dir / f"{name}.log"
        with log.open("ab") as out:  # the child keeps its own descriptor
            p = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=dict(env) if env is not None else None, cwd=cwd)
        proc = Proc(name, p, log)
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None:
                raise ProcessDied(f"{proc.name} exited with {code}:\n{self.log_tail(proc)}")

    def wait(self, fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
        """Poll ``fn`` until truthy; fail at once (with logs) if a child process died."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                value = fn()
                if value:
                    return value
            except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
                last = e
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n{self.logs()}")

    def stop(self, proc: Proc, timeout: float = 10.0) -> int:
        p = proc.popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            self.stop(proc)

    def log_tail(self, proc: Proc, lines: int = 40) -> str:
        try:
            text = proc.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"  {proc.name}| {line}" for line in text)

    def logs(self) -> str:
        return "\n".join(self.log_tail(p) for p in self.procs)

    # -- servers ------------------------------------------------------------------------------------
    def _start_server(self, name: str, argv_for_port: Callable[[int], list[str]]) -> str:
        """Start a server on a free port; retry when another process took the port meanwhile."""
        for _ in range(5):
            port = free_port()
            proc = self.spawn(name, argv_for_port(port))
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if proc.popen.poll() is not None:
                    break
                try:
                    if requests.get(f"{url}/-/ready", timeout=1).ok:
                        return url
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            else:
                raise TimeoutError(f"{name} not ready within 30s:\n{self.log_tail(proc)}")
            self.procs.remove(proc)
            if "address already in use" not in proc.log.read_text(errors="replace"):
                raise ProcessDied(f"{name} exited with {proc.popen.returncode}:\n{self.log_tail(proc)}")
        raise RuntimeError(f"{name}: no free port after 5 attempts")

    def start_alertmanager(self, config_yaml: str) -> str:
        cfg = self.dir / "alertmanager.yml"
        cfg.write_text(config_yaml)
        check = subprocess.run([self.bin.amtool, "check-config", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        storage = self.dir / "alertmanager-data"
        self.alertmanager_url = self._start_server("alertmanager", lambda port: [
            self.bin.alertmanager, f"--config.file={cfg}", f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip listener on 0.0.0.0:9094
        ])
        return self.alertmanager_url

    def start_prometheus(self, config_yaml: str) -> str:
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(config_yaml)
        check = subprocess.run([self.bin.promtool, "check", "config", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        tsdb = self.dir / "prometheus-data"
        self.prometheus_url = self._start_server("prometheus", lambda port: [
            self.bin.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
        ])
        return self.prometheus_url

    # -- Prometheus API -----------------------------------------------------------------------------
    def query(self, expr: str) -> list[dict[str, Any]]:
        assert self.prometheus_url is not None
        r = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=5)
        doc = r.json()
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def wait_until_scraping(self, job: str, timeout: float = 60.0) -> None:
        """Target ``up == 1`` and Alertmanager discovered: only then is the chain live."""
        self.wait(lambda: self.query(f'up{{job="{job}"}} == 1'), timeout, f"target {job} up")
        if self.alertmanager_url is not None:
            assert self.prometheus_url is not None
            self.wait(lambda: requests.get(f"{self.prometheus_url}/api/v1/alertmanagers", timeout=5)
                      .json()["data"]["activeAlertmanagers"], timeout, "Alertmanager discovered by Prometheus")

    def alertmanager_alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager currently holds, filtered by exact label values."""
        assert self.alertmanager_url is not None
        alerts: list[dict[str, Any]] = requests.get(f"{self.alertmanager_url}/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


def prometheus_config(scrape: Mapping[str, str], rule_files: Sequence[Path] = (),
                      alertmanager: str | None = None, interval: str = "1s") -> str:
    """A prometheus.yml: one job per ``scrape`` entry (job -> host:port), rules, Alertmanager."""
    doc: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                           for job, target in scrape.items()],
    }
    if alertmanager is not None:
        host = alertmanager.removeprefix("http://")
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    return json.dumps(doc, indent=1)  # JSON is YAML


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    """A ``Stack`` that is always torn down; its logs are printed (shown by pytest on failure)."""
    stack = Stack(directory, require_stack_binaries())
    try:
        yield stack
    finally:
        stack.close()
        print(stack.logs())
