"""Soak test: the real exporter under continuous appends and scrapes; is its memory bounded?

Runs ``python -m exporter`` on temporary files with a small ``join.max_pending`` and short
windows. A writer appends predictions at a high rate, and labels for only some of them (a few
seconds later), so the pending buffer fills to ``max_pending`` and stays there while the oldest
predictions expire. Four scraper threads fetch ``/metrics`` back to back. Every second the
exporter's RSS (``VmRSS`` in ``/proc/<pid>/status``) is sampled.

Prints a table (time, records read, pending, RSS, scrape p50/p99), then the verdict, and exits
0 when all hold:

* RSS stopped growing after warm-up: the largest RSS of the last third of the run is at most
  the largest of the middle third plus a tolerance (``--rss-tolerance``, default 5%); the
  windows must be shorter than a third of the run for this to mean anything (they hold every
  event of their span, by design);
* ``mlmon_exporter_join_pending`` never exceeded ``max_pending`` in any scrape;
* every scrape succeeded, the exporter kept up with the writer, and it was still running at
  the end (and exited 0 on SIGTERM).

Warm-up: with checkpoints on (the default), RSS keeps rising for the first 60-90 s while
glibc's per-thread malloc arenas reach their high-water marks (checkpoint encoding runs on the
pipeline thread, scrapes on HTTP threads); a 90 s run judges the last third against a middle
third that is partly warm-up. Run 240 s or more for a conclusive verdict, or compare with
``MALLOC_ARENA_MAX=2`` (which plateaus within 30 s, and lower).

Usage::

    python bench/soak.py --seconds 90
    python bench/soak.py --seconds 300 --report-every 30 --csv rss.csv
    python bench/soak.py --seconds 600 --rate 20000 --max-pending 100000
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import requests

PENDING_RE = re.compile(rb'^mlmon_exporter_join_pending\{model="soak"\} (\S+)$', re.M)
RECORDS_RE = re.compile(rb'^mlmon_exporter_records_total\{source="preds"\} (\S+)$', re.M)
EXPIRED_RE = re.compile(rb'^mlmon_expired_predictions_total\{[^}]*\} (\S+)$', re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Shared:
    """What the threads report; appended from several threads (list.append is atomic)."""

    stop: threading.Event = field(default_factory=threading.Event)
    written: int = 0  # prediction lines written
    labels_written: int = 0
    scrapes: list[tuple[float, float]] = field(default_factory=list)  # (when, latency s)
    scrape_errors: list[str] = field(default_factory=list)
    pending: list[tuple[float, float]] = field(default_factory=list)  # (when, join_pending)
    records: list[tuple[float, float]] = field(default_factory=list)  # (when, records_total{preds})
    expired: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (when, MiB)


def writer(sh: Shared, preds: Path, labels: Path, rate: float, label_share: float, label_delay: float,
           t0: float) -> None:
    """Append ``rate`` predictions per second in 20 ms ticks; labels for ``label_share`` of them
    ``label_delay`` seconds later (the rest wait in the join buffer until evicted)."""
    rng = random.Random(7)
    waiting: deque[tuple[float, bytes]] = deque()
    i = 0
    owed = 0.0
    last = time.monotonic()
    with preds.open("ab", buffering=0) as pf, labels.open("ab", buffering=0) as lf:
        while not sh.stop.is_set():
            now = time.monotonic()
            owed += (now - last) * rate
            last = now
            n = int(owed)
            owed -= n
            wall = time.time()
            out = []
            for _ in range(n):
                pred = rng.random() < 0.5
                conf = 0.5 + rng.random() / 2
                out.append(f'{{"id": "req-{i:010d}", "model_version": "1", "prediction": {int(pred)}, '
                           f'"confidence": {conf:.4f}, "timestamp": {wall:.3f}, '
                           f'"features": {{"amount": {rng.gauss(100, 20):.2f}}}}}\n')
                if rng.random() < label_share:
                    correct = rng.random() < 0.85
                    label = int(pred) if correct else 1 - int(pred)
                    waiting.append((now + label_delay, f'{{"id": "req-{i:010d}", "label": {label}}}\n'.encode()))
                i += 1
            if out:
                pf.write("".join(out).encode())
                sh.written = i
            due = []
            while waiting and waiting[0][0] <= now:
                due.append(waiting.popleft()[1])
            if due:
                lf.write(b"".join(due))
                sh.labels_written += len(due)
            sh.stop.wait(0.02)


def scraper(sh: Shared, url: str) -> None:
    with requests.Session() as s:
        while not sh.stop.is_set():
            started = time.perf_counter()
            try:
                r = s.get(url, timeout=10)
                r.raise_for_status()
                body = r.content
            except requests.RequestException as e:
                sh.scrape_errors.append(f"{type(e).__name__}: {e}")
                sh.stop.wait(0.5)
                continue
            now = time.monotonic()
            sh.scrapes.append((now, time.perf_counter() - started))
            m = PENDING_RE.search(body)
            if m:
                sh.pending.append((now, float(m.group(1))))
            m = RECORDS_RE.search(body)
            if m:
                sh.records.append((now, float(m.group(1))))
            sh.expired = max(sh.expired, sum(float(x) for x in EXPIRED_RE.findall(body)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="how long to run (default 90)")
    ap.add_argument("--rate", type=float, default=10_000.0, help="predictions written per second (default 10000)")
    ap.add_argument("--label-share", type=float, default=0.3, help="share of predictions that get a label")
    ap.add_argument("--label-delay", type=float, default=2.0, help="seconds between a prediction and its label")
    ap.add_argument("--max-pending", type=int, default=20_000, help="join.max_pending (default 20000)")
    ap.add_argument("--windows", default="10s,30s", help="comma-separated windows (default 10s,30s)")
    ap.add_argument("--poll-interval", default="1s", help="global.poll_interval (default 1s)")
    ap.add_argument("--scrapers", type=int, default=4, help="concurrent /metrics scrapers (default 4)")
    ap.add_argument("--report-every", type=float, default=5.0, help="seconds per table row (default 5)")
    ap.add_argument("--rss-tolerance", type=float, default=0.05, help="allowed growth of the last third (0.05)")
    ap.add_argument("--no-state", action="store_true", help="run without --state.directory (no checkpoints)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (files, exporter log)")
    ap.add_argument("--csv", type=Path, help="also write the per-second RSS samples here (t, rss_mib)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlmon-soak-"))
    preds, labels = tmp / "preds.jsonl", tmp / "labels.jsonl"
    preds.touch()
    labels.touch()
    windows = [w.strip() for w in args.windows.split(",") if w.strip()]
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
global:
  poll_interval: {args.poll_interval}
  windows: [{", ".join(windows)}]
  checkpoint_interval: 5s
models:
  - name: soak
    classes: ["0", "1"]
    baseline: {{accuracy: 0.9}}
    thresholds: {{min_samples: 100}}
    join: {{ttl: 1h, max_pending: {args.max_pending}}}
    drift: {{features: [amount], methods: [psi, ks], reference_size: 5000}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{preds}", model: soak}}
  - {{name: labels, kind: labels, type: file, path: "{labels}"}}
""")
    port = free_port()
    cmd = [sys.executable, "-m", "exporter", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"]
    if not args.no_state:
        cmd.append(f"--state.directory={tmp / 'state'}")
    log = (tmp / "exporter.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"exporter did not become ready (exit {proc.poll()}); log: {tmp / 'exporter.log'}")
            return 1
        time.sleep(0.1)

    sh = Shared()
    t0 = time.monotonic()
    threads = [threading.Thread(target=writer, args=(sh, preds, labels, args.rate, args.label_share,
                                                     args.label_delay, t0), daemon=True)]
    threads += [threading.Thread(target=scraper, args=(sh, f"{url}/metrics"), daemon=True)
                for _ in range(args.scrapers)]
    for t in threads:
        t.start()

    print(f"soak: {args.seconds:.0f} s, {args.rate:.0f} predictions/s ({args.label_share:.0%} labelled after "
          f"{args.label_delay:g} s), max_pending {args.max_pending}, windows {windows}, {args.scrapers} scrapers, "
          f"exporter pid {proc.pid}{'' if args.no_state else ', checkpoints on'}")
    header = f"{'t (s)':>6} {'written':>10} {'records':>10} {'pending':>8} {'RSS MiB':>8} {'scrapes':>8} " \
             f"{'p50 ms':>7} {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    next_report = t0 + args.report_every
    last_report = t0
    end = t0 + args.seconds
    died = False
    while time.monotonic() < end:
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
        now = time.monotonic()
        rss = rss_mib(proc.pid)
        if rss is None or proc.poll() is not None:
            died = True
            print(f"exporter exited ({proc.poll()}) at t={now - t0:.0f} s")
            break
        sh.rss.append((now, rss))
        if now >= next_report or now >= end:
            lat = [x for when, x in sh.scrapes if last_report <= when < now]
            pend = [x for when, x in sh.pending if last_report <= when < now]
            recs = [x for when, x in sh.records if when < now]
            print(f"{now - t0:>6.0f} {sh.written:>10} {int(recs[-1]) if recs else 0:>10} "
                  f"{int(max(pend)) if pend else 0:>8} {rss:>8.1f} {len(lat):>8} "
                  f"{percentile(lat, 0.5) * 1000:>7.1f} {percentile(lat, 0.99) * 1000:>7.1f}")
            last_report = now
            next_report += args.report_every
    # let the exporter read what was written, then stop everything
    written_at_stop = sh.written
    sh.stop.set()
    for t in threads:
        t.join(timeout=15)
    caught_up = False
    final_records = 0.0
    deadline = time.monotonic() + 30
    while not died and time.monotonic() < deadline:
        try:
            m = RECORDS_RE.search(requests.get(f"{url}/metrics", timeout=5).content)
            final_records = float(m.group(1)) if m else 0.0
        except requests.RequestException:
            pass
        if final_records >= written_at_stop:
            caught_up = True
            break
        time.sleep(0.5)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    else:
        rc = proc.returncode
    log.close()

    if args.csv:
        args.csv.write_text("t,rss_mib\n" + "".join(f"{when - t0:.1f},{r:.1f}\n" for when, r in sh.rss))

    # --- verdict --------------------------------------------------------------------------------
    third = args.seconds / 3
    mid = [r for when, r in sh.rss if third <= when - t0 < 2 * third]
    last = [r for when, r in sh.rss if when - t0 >= 2 * third]
    mid_max, last_max = (max(mid) if mid else float("nan")), (max(last) if last else float("nan"))
    rss_ok = bool(mid and last) and last_max <= mid_max * (1 + args.rss_tolerance)
    mid_p50, last_p50 = percentile(mid, 0.5), percentile(last, 0.5)
    max_seen = max((x for _, x in sh.pending), default=0.0)
    pending_ok = bool(sh.pending) and max_seen <= args.max_pending
    reached = max_seen >= args.max_pending * 0.9
    lat_all = [x for _, x in sh.scrapes]
    window_s = max((_seconds(w) for w in windows), default=0.0)
    print()
    print(f"written {written_at_stop} predictions ({written_at_stop / args.seconds:.0f}/s) and "
          f"{sh.labels_written} labels; exporter read {int(final_records)} "
          f"({'caught up' if caught_up else 'BEHIND'}); predictions expired from the join buffer: "
          f"{int(sh.expired)}")
    print(f"scrapes: {len(lat_all)} ({len(lat_all) / args.seconds:.0f}/s), "
          f"p50 {percentile(lat_all, 0.5) * 1000:.1f} ms, p99 {percentile(lat_all, 0.99) * 1000:.1f} ms, "
          f"max {max(lat_all, default=0) * 1000:.1f} ms, "
          f"errors {len(sh.scrape_errors)}" + (f" (first: {sh.scrape_errors[0]})" if sh.scrape_errors else ""))
    print(f"RSS: start {sh.rss[0][1] if sh.rss else float('nan'):.1f} MiB, max of middle third {mid_max:.1f} MiB, "
          f"max of last third {last_max:.1f} MiB ({(last_max / mid_max - 1) * 100 if mid else float('nan'):+.1f}%)"
          f" -> {'stable' if rss_ok else 'STILL GROWING'}; medians {mid_p50:.1f} and {last_p50:.1f} MiB")
    if window_s > third:
        print(f"  note: the longest window ({window_s:g} s) exceeds a third of the run; its events alone grow RSS")
    print(f"join_pending: max {max_seen:.0f} of max_pending {args.max_pending} -> "
          f"{'within bound' if pending_ok else 'EXCEEDED'}{'' if reached else ' (bound never reached: raise --rate)'}")
    print(f"exporter: {'exited ' + str(rc) + ' on SIGTERM' if alive else 'DIED (exit ' + str(rc) + ')'}")
    ok = rss_ok and pending_ok and caught_up and alive and rc == 0 and not sh.scrape_errors and not died
    print(f"verdict: {'PASS' if ok else 'FAIL'}")
    if args.keep or not ok:
        print(f"files and exporter log kept in {tmp}")
    else:
        _rmtree(tmp)
    return 0 if ok else 1


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    return float(m.group(1)) * units[m.group(2)] if m else 0.0


def _rmtree(path: Path) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


if __name__ == "__main__":
    sys.exit(main())
