"""Resource monitoring of a payload's process tree with psutil, against the JDL's limits.

One sample is one pass over the node's processes (``/proc/<pid>/stat`` read once each: parent,
CPU times, virtual memory and RSS; psutil's ``process_iter`` where there is no /proc) to find
the tree below the payload, then, for the tree's members only, PSS from the kernel's
``smaps_rollup`` (RSS when it cannot be read), plus the sandbox's disk use. Everything is
summed over the tree. ``bench/bench_agent.py`` measures the cost of a sample of a
100-process payload; the runner takes samples in a thread so that the event loop never
waits on /proc.

Limits (``Limits``): MemorySize against PSS (RSS as fallback), WorkDirectorySize against
the sandbox, TTL against wall time. The first limit passed gives the reason text the job
ends ERROR_E with; ``kill_tree`` then sends SIGTERM to the payload's process group and every
tree member, and SIGKILL to whatever is left after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from jalien.wire.site_api import ResourceTrace

MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    processes: int = 0
    cpu: float = 0.0  # user + system seconds of the tree (reaped children included)
    rss: int = 0
    pss: int = 0  # = rss where PSS could not be read
    vms: int = 0
    disk: int = 0
    wall: float = 0.0
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Limits:
    memory: int = 0  # bytes (PSS); 0: none
    disk: int = 0  # bytes (sandbox); 0: none
    ttl: float = 0.0  # wall seconds; 0: none

    def exceeded(self, sample: Sample) -> str | None:
        """Why the payload must die, or None."""
        if self.memory and sample.pss > self.memory:
            return (
                f"memory limit exceeded: the payload used {sample.pss // MB} MB "
                f"(PSS) and MemorySize is {self.memory // MB} MB"
            )
        if self.disk and sample.disk > self.disk:
            return (
                f"disk limit exceeded: the sandbox holds {sample.disk // MB} MB and "
                f"WorkDirectorySize is {self.disk // MB} MB"
            )
        if self.ttl and sample.wall > self.ttl:
            return f"TTL exceeded: the payload ran {sample.wall:.0f} s and TTL is {self.ttl:.0f} s"
        return None


@dataclass
class Trace:
    """Peaks and totals over a payload's life, reported with its final state."""

    samples: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    max_rss: int = 0
    max_pss: int = 0
    max_vms: int = 0
    max_disk: int = 0
    max_processes: int = 0
    last: Sample = field(default_factory=Sample)

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.cpu = max(self.cpu, sample.cpu)
        self.wall = max(self.wall, sample.wall)
        self.max_rss = max(self.max_rss, sample.rss)
        self.max_pss = max(self.max_pss, sample.pss)
        self.max_vms = max(self.max_vms, sample.vms)
        self.max_disk = max(self.max_disk, sample.disk)
        self.max_processes = max(self.max_processes, sample.processes)
        self.last = sample

    def typed(self) -> ResourceTrace:
        """The trace as it travels with a state (``wire.site_api``)."""
        return ResourceTrace(
            samples=self.samples,
            cpu=self.cpu,
            wall=self.wall,
            max_rss=self.max_rss,
            max_pss=self.max_pss,
            max_vms=self.max_vms,
            max_disk=self.max_disk,
            max_processes=self.max_processes,
        )

    def describe(self) -> str:
        return self.typed().describe()


PROC = "/proc"
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
HAVE_PROC = os.path.exists(f"{PROC}/self/stat")

# pid -> (ppid, cpu seconds incl. reaped children, vms bytes, rss bytes)
ProcStat = tuple[int, float, int, int]


def _read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()  # the command name may hold spaces
    if len(rest) < 22 or rest[0] == b"Z":
        return None
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return int(rest[1]), ticks / _TICK, int(rest[20]), int(rest[21]) * _PAGE


def scan() -> dict[int, ProcStat]:
    """One pass over the node's processes: /proc/<pid>/stat once each (Linux); psutil's
    process_iter elsewhere. psutil costs ~4x more per process here (an object and
    several reads each), and the pass covers every process of the node, not only ours."""
    if not HAVE_PROC:
        out: dict[int, ProcStat] = {}
        for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info"]):
            info = proc.info
            if info["ppid"] is None or info["cpu_times"] is None or info["memory_info"] is None:
                continue
            t, m = info["cpu_times"], info["memory_info"]
            cpu = t.user + t.system + t.children_user + t.children_system
            out[proc.pid] = (info["ppid"], cpu, m.vms, m.rss)
        return out
    found: dict[int, ProcStat] = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            stat = _read_stat(int(name))
            if stat is not None:
                found[int(name)] = stat
    return found


def tree_of(root: int, procs: dict[int, ProcStat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in procs.items():
        children.setdefault(stat[0], []).append(pid)
    found = [root] if root in procs else []
    i = 0
    while i < len(found):
        found.extend(children.get(found[i], ()))
        i += 1
    return found


def tree_pids(root: int) -> list[int]:
    """*root* and its living descendants, from one pass over the node's processes."""
    return tree_of(root, scan())


def pss_of(pid: int) -> int | None:
    """Proportional set size from the kernel's smaps_rollup (None: unreadable)."""
    try:
        with open(f"{PROC}/{pid}/smaps_rollup", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    at = data.find(b"\nPss:")
    if at < 0:
        return None
    return int(data[at + 5 :].split(None, 1)[0]) * 1024


class Sampler:
    """Samples one payload: ``root`` is its first process, started at ``started``
    (``time.monotonic``); ``disk`` says how many bytes its sandbox holds."""

    def __init__(self, root: int, started: float, disk: Callable[[], int] | None = None) -> None:
        self.root = root
        self.started = started
        self.disk = disk
        self._pss = HAVE_PROC  # until the kernel refuses it once

    def sample(self) -> Sample:
        procs = scan()
        pids = tree_of(self.root, procs)
        cpu = 0.0
        rss = pss = vms = 0
        for pid in pids:
            _, p_cpu, p_vms, p_rss = procs[pid]
            cpu += p_cpu
            rss += p_rss
            vms += p_vms
            p_pss = pss_of(pid) if self._pss else None
            if p_pss is None and self._pss and os.path.exists(f"{PROC}/{pid}"):
                self._pss = False  # not readable here: RSS from now on
            pss += p_rss if p_pss is None else p_pss
        return Sample(
            processes=len(pids),
            cpu=cpu,
            rss=rss,
            pss=pss,
            vms=vms,
            disk=self.disk() if self.disk is not None else 0,
            wall=time.monotonic() - self.started,
            pids=tuple(pids),
        )


def _signal_all(pgid: int, pids: list[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def kill_tree(root: int, pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the payload's group and tree, SIGKILL what is left after *grace* seconds.
    Processes that left the group and were reparented away escape the tree walk; the
    group signal still reaches those that stayed in the group."""
    pids = await asyncio.to_thread(tree_pids, root)
    _signal_all(pgid, pids, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if not any(psutil.pid_exists(p) and _alive(p) for p in pids):
            return
        await asyncio.sleep(0.05)
    pids = list({*pids, *await asyncio.to_thread(tree_pids, root)})
    _signal_all(pgid, pids, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
