"""What every benchmark here measures the same way: process CPU, percentiles, CPU pinning."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def proc_cpu_seconds(pid: int | str) -> float:
    """User + system CPU of a process, all threads (utime and stime of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile_ms(seconds: Sequence[float], q: float, digits: int = 2) -> float | None:
    """The `q` (0..1) percentile of latencies given in seconds, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, digits)


def pin_load_generator() -> tuple[int, int]:
    """Put this process (the load generator) on the last CPU; the server gets the first.

    Returns (server_cpu, load_cpu); on a one-CPU machine both are the same.
    """
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    os.sched_setaffinity(0, {load_cpu})
    return server_cpu, load_cpu
