"""The fork batch system: detached agents in their own session, counted, cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import os

from jalien.site.batch import AgentState
from jalien.site.fork import ForkBatch


async def wait_for(predicate, tries=500):
    for _ in range(tries):
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_submit_count_cancel(tmp_path):
    batch = ForkBatch()
    quick = tmp_path / "quick.sh"
    quick.write_text("echo hello from $$\n")
    slow = tmp_path / "slow.sh"
    slow.write_text("echo started; exec sleep 60\n")
    log = tmp_path / "quick.log"
    first = await batch.submit(quick, log, "jalien-agent")
    second = await batch.submit(slow, tmp_path / "slow.log", "jalien-agent")
    try:
        assert await wait_for(lambda: _ids(batch, {second}))
        assert f"hello from {first}" in log.read_text()
        jobs = await batch.jobs()
        assert [j.state for j in jobs] == [AgentState.RUNNING]
        assert os.getsid(int(second)) == int(second)  # its own session
        await batch.cancel(second)
        assert await wait_for(lambda: _ids(batch, set()))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(second), 9)


async def _ids(batch, wanted):
    return {j.id for j in await batch.jobs()} == wanted


async def test_cancel_refuses_strangers():
    batch = ForkBatch()
    from jalien.site.batch import BatchError

    for bad in ("1", "not-a-pid"):
        try:
            await batch.cancel(bad)
        except BatchError:
            continue
        raise AssertionError(f"cancel({bad!r}) was accepted")


async def test_a_restarted_vobox_adopts_its_agents(tmp_path):
    """Agents outlive their VoBox; the next one follows them by the pids left in their dirs."""
    script = tmp_path / "hold.sh"
    script.write_text("exec sleep 60\n")
    first = ForkBatch()
    pid = await first.submit(script, tmp_path / "hold.log", "jalien-agent")
    try:
        second = ForkBatch()
        second.adopt([int(pid), 999_999_999])  # a pid that does not exist is dropped
        assert [j.id for j in await second.jobs()] == [pid]
        await second.cancel(pid)
        assert await wait_for(lambda: _ids(first, set()))
        assert await wait_for(lambda: _ids(second, set()))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), 9)
