"""CPU time of server processes, from /proc/<pid>/stat: what a measured op costs the cluster, not the client."""

from __future__ import annotations

import os
from collections.abc import Iterable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds.

    The command name (field 2) may contain spaces and parentheses, so the fields are counted from the
    last ')': after it come state (field 3) ... utime (field 14) and stime (field 15).
    """
    with open(f"/proc/{pid}/stat") as f:
        after_name = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(after_name[14 - 3]), int(after_name[15 - 3])
    return (utime + stime) / CLOCK_TICKS


def cpu_seconds(pids: Iterable[int]) -> float:
    """The processes' CPU time together. A process that is gone raises: its share would silently vanish."""
    return sum(process_cpu_seconds(pid) for pid in pids)
