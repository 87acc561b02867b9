"""The monitor: a sample sums the payload's whole tree; limits give clear reasons; a payload
that leaks memory is found over its limit and its tree killed."""

from __future__ import annotations

import asyncio
import sys
import time

import psutil

from jalien.agent.monitor import MB, Limits, Sample, Sampler, Trace, kill_tree, tree_pids
from jalien.agent.payload import Payload
from jalien.agent.sandbox import Sandbox

LEAK = """import time
hoard = []
while True:
    hoard.append(b"x" * 2_000_000)
    time.sleep(0.01)
"""
STUBBORN = """import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


async def _until(predicate, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_a_sample_covers_the_tree(tmp_path):
    box = Sandbox(tmp_path, 1).create()
    (box.root / "blob").write_bytes(b"y" * 300_000)
    payload = await Payload.start(
        ["/bin/sh", "-c", "sleep 60 & sleep 60 & (sleep 60 & wait) & wait"], box, {}
    )
    sampler = Sampler(payload.pid, time.monotonic(), box.disk_usage)

    async def five():
        sample = await asyncio.to_thread(sampler.sample)
        return sample if sample.processes >= 5 else None

    try:
        sample = await _until(five, "the whole tree (sh, 3 sleeps, a subshell) is seen")
        assert set(sample.pids) == set(tree_pids(payload.pid))
        assert sample.rss > 0 and sample.pss > 0 and sample.vms >= sample.rss
        assert sample.disk >= 300_000
    finally:
        await kill_tree(payload.pid, payload.pgid, grace=2)
    assert await payload.wait() == 128 + 15  # SIGTERM reached the leader
    assert not [p for p in sample.pids if psutil.pid_exists(p) and _running(p)]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_limits_give_the_reason():
    limits = Limits(memory=100 * MB, disk=10 * MB, ttl=60)
    assert limits.exceeded(Sample(pss=50 * MB, disk=MB, wall=10)) is None
    memory = limits.exceeded(Sample(pss=150 * MB, wall=10))
    assert memory == "memory limit exceeded: the payload used 150 MB (PSS) and MemorySize is 100 MB"
    assert "WorkDirectorySize is 10 MB" in (limits.exceeded(Sample(disk=11 * MB)) or "")
    assert "TTL exceeded" in (limits.exceeded(Sample(wall=61)) or "")
    assert Limits().exceeded(Sample(pss=10**12, disk=10**12, wall=10**9)) is None


def test_trace_keeps_peaks():
    trace = Trace()
    trace.add(Sample(processes=3, cpu=1.0, rss=10, pss=8, vms=20, disk=5, wall=1))
    trace.add(Sample(processes=1, cpu=2.0, rss=4, pss=3, vms=9, disk=7, wall=2))
    assert (trace.max_rss, trace.max_pss, trace.max_processes, trace.max_disk) == (10, 8, 3, 7)
    assert trace.cpu == 2.0 and "samples=2" in trace.describe()


async def test_a_memory_leak_is_caught_and_killed(tmp_path):
    box = Sandbox(tmp_path, 2).create()
    payload = await Payload.start([sys.executable, "-c", LEAK], box, {})
    sampler = Sampler(payload.pid, time.monotonic(), box.disk_usage)
    limits = Limits(memory=80 * MB)

    async def over():
        return limits.exceeded(await asyncio.to_thread(sampler.sample))

    try:
        reason = await _until(over, "the leak passes 80 MB")
    finally:
        await kill_tree(payload.pid, payload.pgid, grace=2)
    assert reason.startswith("memory limit exceeded")
    assert await payload.wait() in (128 + 15, 128 + 9)


async def test_kill_tree_escalates_to_sigkill(tmp_path):
    box = Sandbox(tmp_path, 3).create()
    payload = await Payload.start([sys.executable, "-c", STUBBORN], box, {})

    async def ready():
        return "ready" in box.stdout.read_text()

    await _until(ready, "the payload ignores SIGTERM")
    await kill_tree(payload.pid, payload.pgid, grace=0.3)
    assert await payload.wait() == 128 + 9
