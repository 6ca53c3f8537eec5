"""``python -m bench [--quick] [--only ingest,poll_cost,scrape,memory,peers] [--venv DIR]``

Runs every part of the suite, prints its table and saves everything measured to
bench/results/<UTC timestamp>.json. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from bench import ingest, machine, memory, peers, poll_cost, print_table, scrape, to_json

PARTS = ("ingest", "poll_cost", "scrape", "memory", "peers")


def summary(res: dict[str, Any]) -> list[list[str]]:
    """One line per target: measured ratio, the bar, met or not."""
    rows = []
    for r in res.get("ingest", {}).get("ingest", []):
        if r["scenario"] == "nofeatures":
            rate = r["ingest_events_per_s"]
            rows.append(["ingest nofeatures, events/s", f"{rate / 1e6:.2f}M", ">= 1M",
                         "met" if rate >= 1e6 else "not met"])
            continue
        rows.append([f"ingest {r['scenario']} vs json.loads loop", f"{r['ratio_vs_json_loop']:.2f}x", ">= 5x",
                     "met" if r["ratio_vs_json_loop"] >= 5 else "not met"])
    if "poll_cost" in res:
        pc = res["poll_cost"]
        x = pc["ratio_largest_to_smallest"]
        big, small = pc["poll_cost"][-1]["window_events"], pc["poll_cost"][0]["window_events"]
        rows.append([f"per-poll cost, {big:,} / {small:,} window", f"{x:.2f}x", "<= 1.5x",
                     "met" if x <= 1.5 else "not met"])
    if "scrape" in res:
        big = res["scrape"]["scrape"][-1]
        rows.append([f"render {big['series']:,} series / generate_latest", f"{big['render_ratio']:.2f}x", "<= 0.25x",
                     "met" if big["render_ratio"] <= 0.25 else "not met"])
    if "memory" in res:
        m = res["memory"]["memory"]
        worst = max(m["bytes_per_pending_rss"], m["bytes_per_pending_traced"])
        rows.append(["bytes per pending prediction (worst of RSS, traced)", f"{worst:.1f} B", "<= 64 B",
                     "met" if worst <= 64 else "not met"])
    if "peers" in res:
        e = res["peers"]["peers"].get("evidently", {})
        if "ratio_vs_refresh" in e:
            rows.append(["Evidently CPU / ours (per refresh)", f"{e['ratio_vs_refresh']:.0f}x", ">= 100x",
                         "met" if e["ratio_vs_refresh"] >= 100 else "not met"])
            rows.append(["Evidently CPU / ours (from scratch)", f"{e['ratio_vs_from_scratch']:.1f}x", "(info)", ""])
        else:
            rows.append(["Evidently CPU / ours", "n/a", ">= 100x", e.get("error", "not run")])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small N everywhere (a minute or two)")
    ap.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("--venv", default=peers.DEFAULT_VENV, help="virtualenv of bench/peers/requirements.txt")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args()
    parts = tuple(a.only.split(",")) if a.only else PARTS
    started = time.time()
    res: dict[str, Any] = {"machine": machine(), "quick": a.quick,
                           "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    res["load_average_before"] = os.getloadavg()
    runners = {"ingest": lambda: ingest.run(a.quick), "poll_cost": lambda: poll_cost.run(a.quick),
               "scrape": lambda: scrape.run(a.quick), "memory": lambda: memory.run(a.quick),
               "peers": lambda: peers.run(a.quick, a.venv)}
    for part in parts:
        res[part] = runners[part]()
    res["load_average_after"] = os.getloadavg()
    res["duration_s"] = time.time() - started
    res["summary"] = summary(res)
    print_table("Targets", ["measure", "measured", "target", ""], res["summary"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + (".quick" if a.quick else "") + ".json")
    path.write_text(to_json(res))
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
