"""What the load benchmarks (bench_net.py, bench_cache.py, ...) share: pinning a process to
one core, reading another process's CPU time precisely, and how busy the whole machine is,
so that each bench can say per-core figures and whether the machine was quiet."""

from __future__ import annotations

import contextlib
import os
from typing import Any


def pin(slot: int) -> str:
    """Pin this process to the *slot*-th allowed CPU, if there are at least two."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[slot]})
            return f"cpu{cpus[slot]}"
    except (AttributeError, OSError):
        pass
    return "unpinned"


def unpin(pid: int = 0) -> None:
    """Let a process run on any core again (latency: a pinned process waits for its core
    when other jobs of the machine run there)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, os.sched_getaffinity(1) or os.sched_getaffinity(0))


def schedstat_seconds(pid: int) -> float:
    """On-CPU time of every thread of *pid*, in nanoseconds from /proc (precise)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def psutil_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_clock() -> tuple[str, Any]:
    """The most precise way to read another process's CPU time that works here."""
    try:
        if schedstat_seconds(os.getpid()) > 0:
            return "schedstat", schedstat_seconds
    except (OSError, ValueError, IndexError):
        pass
    return "psutil", psutil_seconds


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of *pid* (schedstat; psutil where /proc lacks it)."""
    try:
        return schedstat_seconds(pid)
    except (OSError, ValueError, IndexError):
        return psutil_seconds(pid)


def machine_busy() -> float:
    """CPU seconds every process of the machine spent so far (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
