"""Slurm for real: a one-node cluster on loopback (tests/site/slurm_cluster.py) and the
VoBox's Slurm batch interface submitting, following and cancelling through it."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from jalien.site.batch import AgentState
from jalien.site.slurm import SlurmBatch
from jalien.site.startup_script import AgentConfig
from jalien.site.vobox import LoopOptions, VoBoxLoop
from tests.site.test_vobox_loop import Clock, FakeCentral


def batch_for(cluster) -> SlurmBatch:
    return SlurmBatch(
        f"jalien-test-{uuid.uuid4().hex[:8]}", partition=cluster.partition, env=cluster.env
    )


async def wait_for(predicate, tries=600):
    for _ in range(tries):  # bounded: a minute at most
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_submit_runs_status_and_cancel(slurm_cluster, tmp_path):
    batch = batch_for(slurm_cluster)
    marker = tmp_path / "ran"
    quick = tmp_path / "quick.sh"
    quick.write_text(f"#!/bin/sh\necho output of $SLURM_JOB_ID\ntouch {marker}\n")
    log = tmp_path / "quick.log"
    job_id = await batch.submit(quick, log, batch.job_name)
    assert job_id.isdigit()

    async def quick_done():
        return marker.exists() and job_id not in {j.id for j in await batch.jobs()}

    assert await wait_for(quick_done), slurm_cluster.logs()
    assert f"output of {job_id}" in log.read_text()

    started = tmp_path / "started"
    slow = tmp_path / "slow.sh"
    slow.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 300\n")
    slow_id = await batch.submit(slow, tmp_path / "slow.log", batch.job_name)

    async def running():
        jobs = await batch.jobs()
        return started.exists() and [(j.id, j.state) for j in jobs] == [
            (slow_id, AgentState.RUNNING)
        ]

    assert await wait_for(running), slurm_cluster.logs()
    await batch.cancel(slow_id)

    async def gone():
        return not await batch.jobs()

    assert await wait_for(gone)


async def test_only_our_agents_are_counted(slurm_cluster, tmp_path):
    ours, theirs = batch_for(slurm_cluster), batch_for(slurm_cluster)
    script = tmp_path / "hold.sh"
    script.write_text("#!/bin/sh\nexec sleep 300\n")
    their_id = await theirs.submit(script, tmp_path / "theirs.log", theirs.job_name)
    try:
        assert await wait_for(lambda: _has(theirs, their_id))
        assert await ours.jobs() == []
    finally:
        await theirs.cancel(their_id)


async def _has(batch, job_id):
    return job_id in {j.id for j in await batch.jobs()}


STANDIN = """\
import json, os, sys
with open("env.json.tmp", "w") as out:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, out)
os.rename("env.json.tmp", "env.json")
"""


async def test_vobox_loop_submits_agents_through_slurm(slurm_cluster, tmp_path):
    standin = tmp_path / "standin.py"
    standin.write_text(STANDIN)
    clock = Clock()
    central = FakeCentral(clock, waiting=2)
    agent = AgentConfig(
        host="127.0.0.1", port=1, ca_dir="/ca", site="S", ce="CE", ttl=600, cores=1,
        command=(sys.executable, str(standin)),
    )  # fmt: skip
    batch = batch_for(slurm_cluster)
    options = LoopOptions(agents_dir=tmp_path / "agents", job_name=batch.job_name)
    loop = VoBoxLoop(central, batch, agent, options, clock=clock)
    report = await loop.cycle()
    assert report.submitted == 2, report.error

    async def both_ran():
        return len(list((tmp_path / "agents").glob("*/env.json"))) == 2

    assert await wait_for(both_ran), slurm_cluster.logs()
    for found in (tmp_path / "agents").glob("*/env.json"):
        got = json.loads(found.read_text())
        assert got["argv"] == ["--role", "jobagent"]
        assert got["env"]["JALIEN_CE"] == "CE"
        assert got["env"]["SLURM_JOB_NAME"] == batch.job_name
