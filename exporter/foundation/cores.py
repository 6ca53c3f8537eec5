"""How many cores this process may use: what ``global.ingest_threads`` is cut to."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, cut to its cgroup's CPU quota when it has one
    (a container limited to 1.5 CPUs gets 1; a quota is what Kubernetes' ``limits.cpu`` sets,
    and affinity does not show it). cgroup v2 (``cpu.max``) or v1 (``cpu/cpu.cfs_quota_us``)."""
    cores = len(os.sched_getaffinity(0))
    for quota_file, period_file in ((cgroup / "cpu.max", None),
                                    (cgroup / "cpu" / "cpu.cfs_quota_us", cgroup / "cpu" / "cpu.cfs_period_us")):
        try:
            text = quota_file.read_text().split()
            quota, period = (text[0], text[1]) if period_file is None else (text[0], period_file.read_text().strip())
            if quota not in ("max", "-1") and int(period) > 0:
                return max(1, min(cores, int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return cores


USABLE_CORES = usable_cores()
"""The pipeline parses ahead on a second thread (``global.ingest_threads: 2``) only where the
process may use two cores."""
