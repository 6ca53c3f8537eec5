"""How much parsing ahead leaves on the table: one ingest scenario run three ways on the same data.

* in turn: ``global.ingest_threads: 1``, every poll parsed and then applied;
* parsing ahead: ``global.ingest_threads: 2`` (the default);
* the pipeline thread alone: the polls of the in-turn run replayed with their parse results
  computed beforehand, so the wall time is the pipeline thread's own work (reading, join, windows,
  drift, snapshots) with no parsing and nothing to wait for.

The gap between the last two is what the two threads lose to each other (the GIL, hand-overs).

    python -m bench.parse_headroom [--scenario binary|multiclass|nofeatures] [--n N] [--repeats R]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from bench import ingest
from exporter.core import pipeline


def run(scenario: str, n: int, repeats: int) -> dict[str, float]:
    """Best wall seconds of each way, over ``repeats`` rounds."""
    real_parse = pipeline.Pipeline._parse
    recorded: list[Any] = []
    replaying: list[Any] = []

    def recording(self: pipeline.Pipeline, polled: Any) -> Any:
        result = real_parse(self, polled)
        recorded.append(result)
        return result

    def replaying_parse(self: pipeline.Pipeline, polled: Any) -> Any:
        return replaying.pop(0)

    best: dict[str, float] = defaultdict(lambda: float("inf"))
    try:
        for _ in range(repeats):
            recorded.clear()
            pipeline.Pipeline._parse = recording  # type: ignore[method-assign]
            best["in turn"] = min(best["in turn"],
                                  ingest.run_scenario(scenario, n, 100_000, threads=1)["ingest_wall_s"])
            pipeline.Pipeline._parse = real_parse  # type: ignore[method-assign]
            best["parsing ahead"] = min(best["parsing ahead"],
                                        ingest.run_scenario(scenario, n, 100_000, threads=2)["ingest_wall_s"])
            replaying[:] = recorded
            pipeline.Pipeline._parse = replaying_parse  # type: ignore[method-assign]
            best["pipeline thread alone"] = min(best["pipeline thread alone"],
                                                ingest.run_scenario(scenario, n, 100_000, threads=1)["ingest_wall_s"])
            assert not replaying, "the replay read other polls than the recording"
    finally:
        pipeline.Pipeline._parse = real_parse  # type: ignore[method-assign]
    return dict(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="binary", choices=ingest.SCENARIOS)
    ap.add_argument("--n", type=int, default=300_000, help="predictions (and as many labels)")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    best = run(a.scenario, a.n, a.repeats)
    events = 2 * a.n
    for way, wall in best.items():
        print(f"{way:24s} {wall:6.3f} s  {events / wall / 1e6:5.2f}M events/s")


if __name__ == "__main__":
    main()
