"""ARC for real: A-REX with its fork back end on loopback (tests/site/arc_ce.py) and the
VoBox's ARC batch interface submitting (a proxy it made, delegated by arcsub; the agent's
files uploaded to the session directory), following (A-REX's own job states) and
cancelling through it; ended agents' logs come back to their directories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from jalien.auth.certs import load_cert
from jalien.auth.proxy import is_proxy
from jalien.site.arc import ArcBatch
from jalien.site.batch import AgentState
from jalien.site.startup_script import LOG_NAME, AgentConfig, write_agent_dir
from jalien.site.vobox import LoopOptions, VoBoxLoop
from tests.site.test_vobox_loop import Clock, FakeCentral

pytestmark = pytest.mark.cython_only  # a real A-REX, no twin involved: run once

STANDIN = (
    'echo "argv: $*"; echo "ce: $JALIEN_CE"; echo "token: $(cat "$JALIEN_TOKEN_CERT")"; '
    'echo "state: $JALIEN_STATE_DIR"; echo "pwd: $(pwd)"; echo "user: $(id -un)"; sleep "$0"'
)


def agent_config(seconds: int) -> AgentConfig:
    return AgentConfig(
        host="127.0.0.1", port=1, ca_dir="/ca", site="S", ce="CE", ttl=600, cores=1,
        command=("/bin/sh", "-c", STANDIN, str(seconds)), staged=True,
    )  # fmt: skip


def batch_for(arc_ce, tmp_path: Path) -> ArcBatch:
    ce, pki = arc_ce
    vobox = pki.users["vobox"]
    return ArcBatch(ce.url, tmp_path / "arc", ca_dir=pki.ca_dir, cert=vobox.cert, key=vobox.key)


async def wait_for(predicate, seconds: float = 90.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds  # bounded
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.5)
    return False


def _sleeping(ce, seconds: int) -> list[psutil.Process]:
    session = f"{ce.root}/session/"
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if (proc.info["cwd"] or "").startswith(session) and proc.info["cmdline"][:2] == [
            "sleep",
            str(seconds),
        ]:
            found.append(proc)
    return found


async def test_submit_follow_and_cancel(arc_ce, tmp_path):
    ce, _ = arc_ce
    batch = batch_for(arc_ce, tmp_path)
    script = write_agent_dir(tmp_path / "agent", agent_config(281), b"TOKEN-CERT", b"TOKEN-KEY")
    job_id = await batch.submit(script, script.parent / LOG_NAME, "jalien-arc-test")
    assert job_id.startswith(ce.url), job_id
    proxy = load_cert(batch.proxy_path)  # made from the VoBox's certificate, delegated
    assert is_proxy(proxy)
    assert (await batch.jobs())[0].state is AgentState.QUEUED  # accepted, staging in

    async def running():
        jobs = await batch.jobs()
        return [(j.id, j.state) for j in jobs] == [(job_id, AgentState.RUNNING)] and bool(
            _sleeping(ce, 281)
        )

    assert await wait_for(running), ce.logs()
    # a restarted VoBox follows the agents it submitted (agents.json beside its proxy)
    again = batch_for(arc_ce, tmp_path)
    assert [(j.id, j.state) for j in await again.jobs()] == [(job_id, AgentState.RUNNING)]
    (agent,) = _sleeping(ce, 281)
    if os.geteuid() == 0:  # A-REX never runs a job as root: the CE maps us to nobody
        assert agent.username() == "nobody"
    await batch.cancel(job_id)
    seen: set[str] = set()

    async def cleaned():  # A-REX cancels it (CANCELING, FINISHED), then it is cleaned away
        seen.update((await batch.states([job_id])).values())
        return await batch.jobs() == [] and await batch.states([job_id]) == {job_id: ""}

    assert await wait_for(cleaned, 60), (seen, ce.logs())
    assert "CANCELING" in seen or "FINISHED" in seen, seen
    assert "argv: --role jobagent" in (script.parent / LOG_NAME).read_text()
    # ARC's fork back end signals only the job's top process (cancel-fork-job: kill -TERM
    # <local id>); with a batch system behind the CE the whole job ends. Ours, by hand:
    for proc in _sleeping(ce, 281):
        proc.kill()


async def test_vobox_loop_runs_agents_through_arc(arc_ce, tmp_path):
    ce, _ = arc_ce
    clock = Clock()
    central = FakeCentral(clock, waiting=2)
    batch = batch_for(arc_ce, tmp_path)
    options = LoopOptions(agents_dir=tmp_path / "agents", job_name="jalien-arc-loop")
    loop = VoBoxLoop(central, batch, agent_config(1), options, clock=clock)
    report = await loop.cycle()
    assert report.submitted == 2, report.error
    assert report.queued == 0 and report.running == 0  # counted from the next cycle on

    held: list[int] = []

    async def both_back():  # each cycle follows them; an ended one's log is fetched
        report = await loop.cycle()
        assert not report.error, report.error
        held.append(report.queued + report.running)
        return len(list((tmp_path / "agents").glob(f"*/{LOG_NAME}"))) == 2

    central.waiting = 0
    assert await wait_for(both_back), ce.logs()
    assert await batch.jobs() == []
    assert held[0] == 2 and held[-1] == 0, held  # counted while the CE held them
    for log in (tmp_path / "agents").glob(f"*/{LOG_NAME}"):
        text = log.read_text()
        assert "argv: --role jobagent" in text, text
        assert "ce: CE" in text and "token: token 1" in text, text
        # the agent ran in the CE's session directory, from the files arcsub uploaded
        assert f"pwd: {ce.root}/session/" in text, text
        assert f"state: {ce.root}/session/" in text, text
        assert "Job state change" in (log.parent / "arc-errors.log").read_text()  # A-REX's
