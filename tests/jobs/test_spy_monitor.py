"""spy from outside and the sites' reports, on an in-process server over TLS: the question
is pushed on the connection that matched the job and answered there with spyReport; only
the job's owner and admins may ask; a silent agent is a timeout; a bad question is exit 22.
monitor.report feeds gridstatus (a site report only from a VoBox)."""

from __future__ import annotations

import asyncio

import pytest

from jalien.commands.job_cmds import JobCommands
from jalien.commands.monitor_cmds import MonitorCommands
from jalien.jobs.broker import Broker
from jalien.jobs.service import JobService
from jalien.jobs.spy import SpyDesk, check_what
from jalien.monitor.grid import GridView
from jalien.wire import monitor_api, site_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Event, Request
from jalien.wire.monitor_api import AgentReport, SiteReport, SpyReport, Usage
from jalien.wire.site_api import JobOffer, StatusChange

from .test_job_commands import submit

OFFER = JobOffer(site="CERN", ce="ALICE::CERN::Fork", ttl=3600, cores=1, node="wn07")


@pytest.fixture
async def spy_server(make_server, tmp_path):
    from jalien.jobs.store import TaskQueueStore

    store = TaskQueueStore(tmp_path / "tq.db")
    await store.start()
    jobs = JobService(store, Broker())
    await jobs.start()
    desk = SpyDesk(jobs, timeout=1.0)
    grid = GridView()

    def add(table):
        JobCommands(table, jobs).register()
        MonitorCommands(table, desk, grid, jobs.live).register()

    server = await make_server(add_commands=add)
    server.grid = grid
    yield server
    await store.close()


async def running_job(server, connect, answer=True, owner="alice"):
    """*owner*'s job, matched by the 'vobox' (a host identity) and RUNNING; the vobox's
    client answers spy questions when *answer*."""
    alice = await connect(server, login=owner)
    site = await connect(server, login="vobox")
    asked: list[dict] = []
    answers: set[asyncio.Future] = set()

    def on_event(channel: int, event: Event) -> None:
        if event.topic != monitor_api.SPY_TOPIC:
            return
        asked.append(dict(event.payload))
        if not answer:
            return
        what = event.payload["what"]
        report = SpyReport(
            ref=int(event.payload["ref"]),
            queue_id=int(event.payload["queueId"]),
            what=what,
            text=f"the {what} of the job" if what != "missing.txt" else "",
            error="no file missing.txt in the job's sandbox" if what == "missing.txt" else "",
        )
        request = Request(command="spyReport", data=[monitor_api.encode(report)])
        answers.add(asyncio.ensure_future(site.request(request)))

    site.on_event = on_event
    job = await submit(alice)
    got = await site.request(Request(command="getMatchJob", data=[site_api.encode(OFFER)]))
    assert got.exitcode == 0 and got.data, got.error
    for state in ("STARTED", "RUNNING"):
        change = StatusChange(queue_id=job, state=state)
        reply = await site.request(Request(command="setJobStatus", data=[site_api.encode(change)]))
        assert reply.exitcode == 0, reply.error
    return alice, site, job, asked


async def test_the_owner_and_admins_spy_others_may_not(spy_server, connect):
    alice, _site, job, asked = await running_job(spy_server, connect)
    for what in ("stdout", "stderr", "workdir", "nodeinfo", "out/result.txt"):
        reply = await alice.call("spy", str(job), what)
        assert reply.exitcode == 0, reply.error
        assert reply.results[0]["message"] == f"the {what} of the job"
    assert [a["what"] for a in asked][-1] == "out/result.txt"
    top = (await alice.call("top")).results[0]
    assert top["RUNNING"] == "1" and "active jobs by user:" in top["message"]
    assert "alice" in top["message"].split("active jobs by user:")[1]
    admin = await connect(spy_server, login="jdoe")
    assert (await admin.call("spy", str(job), "stdout")).exitcode == 0
    host = await connect(spy_server, login="vobox")  # the policy: a host may not spy
    refused = await host.call("spy", str(job), "stdout")
    assert refused.exitcode == 13 and "may not spy on jobs" in refused.error
    missing = await alice.call("spy", str(job), "missing.txt")
    assert missing.exitcode == 2 and "no file missing.txt" in missing.error


async def test_another_user_may_not(spy_server, connect):
    _jdoe, _site, job, asked = await running_job(spy_server, connect, owner="jdoe")
    alice = await connect(spy_server, login="alice")
    refused = await alice.call("spy", str(job), "stdout")
    assert refused.exitcode == 13 and "belongs to jdoe" in refused.error
    assert not asked


async def test_bad_questions_and_jobs_not_running(spy_server, connect):
    alice, site, job, _ = await running_job(spy_server, connect)
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../../b"):
        reply = await alice.call("spy", str(job), bad)
        assert reply.exitcode == 22, (bad, reply.error)
    assert (await alice.call("spy", "x", "stdout")).exitcode == 22
    assert (await alice.call("spy", str(job))).exitcode == 22  # usage
    done = StatusChange(queue_id=job, state="DONE", exit_code=0)
    assert (await site.request(
        Request(command="setJobStatus", data=[site_api.encode(done)])
    )).exitcode == 0  # fmt: skip
    reply = await alice.call("spy", str(job), "stdout")
    assert reply.exitcode == 2 and "only a running job" in reply.error


async def test_a_silent_agent_is_a_timeout(spy_server, connect):
    alice, _site, job, asked = await running_job(spy_server, connect, answer=False)
    reply = await alice.call("spy", str(job), "stdout")
    assert reply.exitcode == 62 and "did not answer" in reply.error
    assert len(asked) == 1


async def test_only_the_matching_agent_may_answer(spy_server, connect):
    _alice, _site, job, _ = await running_job(spy_server, connect, answer=False)
    other = await connect(spy_server, login="jdoe")  # an admin, but not the job's agent
    late = SpyReport(ref=999, queue_id=job, what="stdout", text="x")
    reply = await other.request(Request(command="spyReport", data=[monitor_api.encode(late)]))
    assert reply.exitcode == 0  # an answer nobody waits for is dropped


async def test_reports_feed_gridstatus(spy_server, connect):
    site = await connect(spy_server, login="vobox")
    report = SiteReport(site="CERN", ce="ALICE::CERN::Fork", max_running=10, running=3,
                        queued=1, waiting=7, errors=["sbatch: failed"])  # fmt: skip
    reply = await site.request(Request(command="monitor.report", data=[monitor_api.encode(report)]))
    assert reply.exitcode == 0, reply.error
    agent = AgentReport(site="CERN", ce="ALICE::CERN::Fork", node="wn07", queue_id=5,
                        usage=Usage(cpu=2.5, rss=1 << 20))  # fmt: skip
    reply = await site.request(Request(command="monitor.report", data=[monitor_api.encode(agent)]))
    assert reply.exitcode == 0, reply.error
    admin = await connect(spy_server, login="jdoe")
    status = await admin.call("gridstatus")
    text = status.results[-1]["message"]
    assert "CERN/ALICE::CERN::Fork" in text and "wn07" in text and "sbatch: failed" in text
    assert status.results[0]["waiting"] == "7"
    alice = await connect(spy_server, login="alice")  # a user sees the CEs, not others' agents
    mine = (await alice.call("gridstatus")).results[-1]["message"]
    assert "CERN/ALICE::CERN::Fork" in mine and "wn07" not in mine and "sbatch" not in mine
    refused = await alice.request(
        Request(command="monitor.report", data=[monitor_api.encode(report)])
    )
    assert refused.exitcode == 13
    junk = await site.request(Request(command="monitor.report", data=[b"\x93junk"]))
    assert junk.exitcode == 22


def test_check_what():
    assert check_what("stdout") == "stdout" and check_what("a/b.txt") == "a/b.txt"
    for bad in ("", "/x", "..", "a/../b", "x\x00"):
        with pytest.raises(RequestError):
            check_what(bad)
