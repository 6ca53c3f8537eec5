"""Part 3: the cost of /metrics for 1k, 10k and 100k series.

Our exposition is rendered once per cycle, in the pipeline thread, from the Snapshot's families
(``exporter.report.snapshot.render``); a scrape then only sends those bytes. prometheus-client renders
on every scrape (``generate_latest``). Both are measured in the same run on the same number of
series with the same label sets (model, model_version, window, class), ours spread over 20
gauge families, prometheus-client's as plain ``Gauge`` s:

* **render**: ``render(snapshot.families)`` against ``generate_latest(registry)``, median CPU
  time of repeated calls (both single-threaded; CPU time is steadier than wall time on a busy
  machine). Ours alternates between two snapshots with the same label sets and new values and
  Sample objects, as consecutive cycles of a running exporter; its first render (which also
  fills the label cache) is shown beside;
* **serve**: median wall time of ``GET /metrics`` over loopback (keep-alive) from our real
  ``ExporterHTTPServer`` with a published snapshot, against prometheus-client's own
  ``start_http_server`` (which renders per scrape).

    python -m bench.scrape [--quick] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import http.client
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, generate_latest, start_http_server

from bench import cpu_median_of, median_of, print_table
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot
from exporter.report.snapshot import Family, Sample, Snapshot, render

FAMILIES = 20
LABELS = ("model", "model_version", "window", "class")


def label_sets(n: int) -> list[tuple[str, str, str, str]]:
    """n distinct label sets: 5 classes x 2 windows per version, versions across 10 models."""
    out = []
    for i in range(n):
        version, rest = divmod(i, 10)
        out.append((f"model-{version % 10}", str(version), ("1h", "24h")[rest % 2], str(rest // 2)))
    return out


def our_snapshot(n: int, seed: int = 0) -> Snapshot:
    rng = np.random.default_rng(seed)
    per = -(-n // FAMILIES)
    sets = label_sets(per)
    fams = []
    left = n
    for f in range(FAMILIES):
        k = min(per, left)
        left -= k
        values = rng.random(k).tolist()
        name = f"mlmon_bench_{f}_ratio"
        fams.append(Family(name, "gauge", f"Benchmark gauge {f}.",
                           tuple(Sample(name, tuple(zip(LABELS, sets[i], strict=True)), values[i]) for i in range(k))))
    return Snapshot(tuple(fams), time.time(), True)


def client_registry(n: int, seed: int = 0) -> CollectorRegistry:
    rng = np.random.default_rng(seed)
    reg = CollectorRegistry()
    per = -(-n // FAMILIES)
    sets = label_sets(per)
    left = n
    for f in range(FAMILIES):
        k = min(per, left)
        left -= k
        g = Gauge(f"mlmon_bench_{f}_ratio", f"Benchmark gauge {f}.", LABELS, registry=reg)
        for i, v in enumerate(rng.random(k).tolist()):
            g.labels(*sets[i]).set(v)
    return reg


def _get(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    return len(resp.read())


def serve_time(port: int, repeat: int) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    size = _get(conn)
    t = median_of(lambda: _get(conn), repeat)
    conn.close()
    return t, size


def measure(n: int, repeat: int) -> dict[str, Any]:
    snap = our_snapshot(n)
    reg = client_registry(n)
    t_first = cpu_median_of(lambda: render(snap.families), 1)  # the first render fills the label cache
    ours = render(snap.families)
    theirs = generate_latest(reg)
    assert ours.count(b"\n") - 2 * FAMILIES == n, "our exposition has the wrong number of series"
    assert theirs.count(b"\n") - 2 * FAMILIES == n
    t_ours = cpu_median_of(lambda: render(snap.families), repeat)
    fresh = our_snapshot(n, seed=1)  # a new cycle: new values and Sample objects, same label sets
    t_cold = cpu_median_of(lambda: (render(fresh.families), render(snap.families)), repeat) / 2
    t_theirs = cpu_median_of(lambda: generate_latest(reg), repeat)

    rendered = RenderedSnapshot()
    rendered.publish(snap)
    server = ExporterHTTPServer(("127.0.0.1", 0), rendered)
    server.serve_in_thread()
    client_server, _client_thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        s_ours, size_ours = serve_time(int(server.server_address[1]), repeat)
        s_theirs, size_theirs = serve_time(int(client_server.server_address[1]), repeat)
    finally:
        server.shutdown()
        server.server_close()
        client_server.shutdown()
        client_server.server_close()
    return {
        "series": n, "bytes": len(ours), "client_bytes": len(theirs),
        "render_s": t_ours, "render_first_s": t_first, "render_next_cycle_s": t_cold,
        "client_generate_latest_s": t_theirs,
        "render_ratio": t_cold / t_theirs,
        "serve_s": s_ours, "client_serve_s": s_theirs, "serve_ratio": s_ours / s_theirs,
        "serve_bytes": size_ours, "client_serve_bytes": size_theirs,
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    sizes = sizes or ((1_000, 10_000) if quick else (1_000, 10_000, 100_000))
    results = [measure(n, repeat=5 if n >= 100_000 else 15) for n in sizes]
    rows = [[f"{r['series']:,}", f"{r['render_first_s'] * 1e3:.2f}", f"{r['render_next_cycle_s'] * 1e3:.2f}",
             f"{r['client_generate_latest_s'] * 1e3:.2f}", f"{r['render_ratio']:.2f}x",
             f"{r['serve_s'] * 1e3:.2f}", f"{r['client_serve_s'] * 1e3:.2f}", f"{r['serve_ratio']:.3f}x"]
            for r in results]
    print_table("3. Scrape (ms): our render once per cycle vs generate_latest; GET /metrics over loopback",
                ["series", "1st render", "render", "generate_latest", "ratio", "our GET", "client GET",
                 "ratio"], rows)
    return {"scrape": results, "target": "render <= 0.25x generate_latest at 100k series"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1k and 10k series only")
    ap.add_argument("--sizes")
    a = ap.parse_args()
    run(a.quick, tuple(int(x) for x in a.sizes.split(",")) if a.sizes else None)


if __name__ == "__main__":
    main()
