"""The VoBox's loop with a fake central and a fake batch system, on a fake clock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import pytest

from jalien.site.batch import AgentState, BatchError, BatchJob
from jalien.site.startup_script import AgentConfig
from jalien.site.vobox import AgentToken, CentralError, LoopOptions, VoBoxLoop, renew_due


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeCentral:
    def __init__(self, clock: Clock, waiting: int = 0) -> None:
        self.clock = clock
        self.waiting = waiting
        self.tokens = 0
        self.down = False

    async def waiting_jobs(self, *, site, ce, ttl, cores):
        if self.down:
            raise CentralError("no connection")
        assert (site, ce, ttl, cores) == ("S", "CE", 600, 1)
        return self.waiting

    async def jobagent_token(self, hours):
        if self.down:
            raise CentralError("no connection")
        self.tokens += 1
        now = self.clock()
        text = f"token {self.tokens}".encode()
        return AgentToken(cert_pem=text, key_pem=text, not_before=now, not_after=now + hours * 3600)


class FakeBatch:
    name = "fake"

    def __init__(self) -> None:
        self.jobs_: dict[str, AgentState] = {}
        self.scripts: list = []
        self.broken = False

    async def submit(self, script, log, job_name):
        if self.broken:
            raise BatchError("sbatch: nope")
        self.scripts.append(script)
        job_id = str(len(self.scripts))
        self.jobs_[job_id] = AgentState.RUNNING
        return job_id

    async def jobs(self):
        return [BatchJob(i, s) for i, s in self.jobs_.items()]

    async def cancel(self, job_id):
        self.jobs_.pop(job_id, None)


def make_loop(tmp_path, waiting=0, **options):
    clock = Clock()
    central = FakeCentral(clock, waiting)
    batch = FakeBatch()
    agent = AgentConfig(
        host="127.0.0.1", port=1, ca_dir="/ca", site="S", ce="CE", ttl=600, cores=1,
        command=("jalien-bin",),
    )  # fmt: skip
    opts = LoopOptions(agents_dir=tmp_path / "agents", **options)
    return VoBoxLoop(central, batch, agent, opts, clock=clock), central, batch, clock


async def test_submits_what_waits_once(tmp_path):
    loop, central, batch, clock = make_loop(tmp_path, waiting=3)
    report = await loop.cycle()
    assert (report.submitted, report.waiting) == (3, 3)
    script = batch.scripts[0]
    assert (script.parent / "batchid").read_text() == "1"
    assert (script.parent / "tokencert.pem").read_bytes() == b"token 1"
    # the three agents are starting: the same three jobs do not call for more agents
    assert (await loop.cycle()).submitted == 0
    clock.now += 300  # past the grace period: they took their jobs, the count is new demand
    central.waiting = 1
    assert (await loop.cycle()).submitted == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["submitted_total"] == 4 and status["last_cycle"]["running"] == 3


async def test_respects_max_slots(tmp_path):
    loop, _, batch, clock = make_loop(tmp_path, waiting=50, max_running=4, max_queued=3)
    assert (await loop.cycle()).submitted == 3  # max_queued per cycle
    clock.now += 300
    assert (await loop.cycle()).submitted == 1  # max_running in all
    clock.now += 300
    assert (await loop.cycle()).submitted == 0
    batch.jobs_.pop("1")  # one agent ended
    assert (await loop.cycle()).submitted == 1


async def test_token_renewed_before_agents_would_outlive_it(tmp_path):
    loop, central, _, clock = make_loop(tmp_path, waiting=0, token_hours=2.0)
    await loop.cycle()
    assert central.tokens == 1
    clock.now += 3600  # half of the lifetime: not yet
    await loop.cycle()
    assert central.tokens == 1
    clock.now += 3600 - 600 - 299  # the agents' TTL (600 s) + 5 min left: renew
    await loop.cycle()
    assert (central.tokens, loop.renewals) == (2, 1)


def test_renew_due_rules():
    token = AgentToken(cert_pem=b"", key_pem=b"", not_before=0.0, not_after=100.0)
    assert renew_due(None, 0.0, 10)
    assert not renew_due(token, 49.0, 10)  # never in the first half
    assert renew_due(token, 50.0, 3600)


async def test_central_down_or_batch_broken_submits_nothing(tmp_path):
    loop, central, batch, _ = make_loop(tmp_path, waiting=2)
    central.down = True
    report = await loop.cycle()
    assert report.submitted == 0 and "no connection" in report.error
    central.down = False
    batch.broken = True
    report = await loop.cycle()
    assert report.submitted == 0 and "sbatch: nope" in report.error


async def test_old_agent_dirs_are_removed(tmp_path):
    loop, _, batch, clock = make_loop(tmp_path, waiting=2, keep_dirs=3600.0)
    await loop.cycle()
    dirs = sorted(p.parent for p in batch.scripts)
    old = time.time() - 7200
    for d in dirs:
        os.utime(d, (old, old))
    batch.jobs_.pop("1")  # agent 1 is gone, agent 2 still runs
    clock.now += 300
    report = await loop.cycle()
    assert report.removed_dirs == 1
    assert not dirs[0].exists() and dirs[1].exists()


@pytest.mark.parametrize("ttl_left", [True, False])
async def test_no_agents_with_a_token_shorter_than_their_ttl(tmp_path, ttl_left):
    loop, _central, _batch, _ = make_loop(tmp_path, waiting=1, token_hours=0.5 if ttl_left else 0.1)
    report = await loop.cycle()
    assert report.submitted == (1 if ttl_left else 0)


async def test_agents_ending_at_once_hold_submissions_back(tmp_path, caplog):
    loop, _, batch, clock = make_loop(tmp_path, waiting=1, interval=60.0)
    for expected in (1, 1, 1):  # each agent ends before the next cycle
        assert (await loop.cycle()).submitted == expected
        (batch.scripts[-1].parent / "jobagent.log").write_text("JALIEN_WORKDIR is broken\n")
        batch.jobs_.clear()
        clock.now += 5
    report = await loop.cycle()  # the third quick exit is seen here: hold
    assert report.submitted == 0 and "holding submissions" in report.error
    assert "JALIEN_WORKDIR is broken" in caplog.text
    clock.now += 61  # the hold is over: one more try
    assert (await loop.cycle()).submitted == 1
    clock.now += 300  # that one lived past the grace period: back to normal
    batch.jobs_.clear()
    await loop.cycle()
    assert loop.quick_exits == 0


async def test_a_long_queued_agent_counts_as_starting_once_it_runs(tmp_path):
    loop, _, batch, clock = make_loop(tmp_path, waiting=1)
    assert (await loop.cycle()).submitted == 1
    batch.jobs_["1"] = AgentState.QUEUED  # Slurm keeps it queued for long
    clock.now += 600
    report = await loop.cycle()
    assert (report.queued, report.submitted) == (1, 0)  # the queued agent stands for the job
    batch.jobs_["1"] = AgentState.RUNNING  # it starts: it has not asked for its job yet
    clock.now += 5
    report = await loop.cycle()
    assert (report.running, report.starting, report.submitted) == (1, 1, 0)


async def test_idle_cycles_log_at_debug_changes_at_info(tmp_path, caplog):
    """An idle VoBox does not log a line every cycle: the same counts again are DEBUG."""
    loop, central, _, clock = make_loop(tmp_path, waiting=0)
    caplog.set_level(logging.DEBUG, logger="jalien.vobox")

    def cycle_lines(level):
        return [r for r in caplog.records if r.levelno == level and r.msg.startswith("cycle")]

    await loop.cycle()  # the first state: INFO
    assert len(cycle_lines(logging.INFO)) == 1
    for _ in range(5):
        clock.now += 5
        await loop.cycle()
    assert len(cycle_lines(logging.INFO)) == 1
    assert len(cycle_lines(logging.DEBUG)) == 5
    central.waiting = 1  # work arrives: an agent is submitted, at INFO
    await loop.cycle()
    assert len(cycle_lines(logging.INFO)) == 2
    central.down = True  # an error: INFO and a warning, once
    for _ in range(3):
        await loop.cycle()
    assert len(cycle_lines(logging.WARNING)) == 1


async def test_an_agents_directory_that_cannot_be_made_is_retried_not_the_end(tmp_path, caplog):
    """It ended the loop's task for good (nothing logged, the VoBox idle until restarted)."""
    loop, _, _, _ = make_loop(tmp_path, waiting=1, interval=0.01)
    (tmp_path / "agents").write_text("a file where the directory goes")
    stop = asyncio.Event()
    task = asyncio.ensure_future(loop.run(stop))

    async def until(condition) -> None:
        deadline = time.monotonic() + 20
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def failures() -> int:
        return sum("failed again" in r.getMessage() for r in caplog.records)

    caplog.set_level(logging.WARNING)
    await until(lambda: task.done() or failures() >= 2)
    assert not task.done(), task.exception()
    assert loop.cycles == 0
    (tmp_path / "agents").unlink()
    await until(lambda: task.done() or loop.cycles >= 1)
    assert loop.cycles >= 1 and (tmp_path / "agents").is_dir()
    stop.set()
    await asyncio.wait_for(task, 10)
