"""The matching loop with a fake central: jobs run one after another, a pushed kill reaches
the right job, an idle agent ends, a refused agent says why; the role's JDL reading."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from jalien.agent.agent import AgentConfig, AgentError, JobAgent, match_ttl
from jalien.agent.runner import RunConfig
from jalien.net.client import Client
from jalien.roles.jobagent import parse_job
from jalien.wire import site_api
from jalien.wire.messages import Event, Reply
from jalien.wire.site_api import JobOffer, MatchedJob, StatusChange


class FakeCentral:
    def __init__(self, jobs, refuse: bool = False) -> None:
        self.jobs = list(jobs)
        self.refuse = refuse
        self.calls: list[tuple[str, ...]] = []
        self.on_event = None

    async def call(self, command, *options, timeout=None):
        self.calls.append((command, *options))
        return Reply()

    async def request(self, request, timeout=None):
        """Typed site calls (wire.site_api): the offer in, the matched job out."""
        kind = JobOffer if request.command == "getMatchJob" else StatusChange
        message = site_api.decode(request.data[0], kind)
        self.calls.append((request.command, message))
        if request.command == "getMatchJob":
            if self.refuse:
                return Reply(exitcode=13, error="Permission denied: only JobAgents get jobs")
            if self.jobs:
                return Reply(data=[site_api.encode(self.jobs.pop(0))])
            return Reply()  # no job
        return Reply()

    async def close(self):
        pass


def record(job_token, queue_id: int, jdl: str) -> MatchedJob:
    cert, key = job_token.issue(str(queue_id))
    return MatchedJob(
        queue_id=queue_id,
        user="jdoe",
        jdl=jdl,
        output_dir=f"/alice/cern.ch/user/j/jdoe/alien-job-{queue_id}/",
        token_cert=cert,
        token_key=key,
    )


def make_agent(tmp_path, job_token, central, **config):
    async def connect_job(job):
        return Client("127.0.0.1", 9, None, reconnect=False)

    run = RunConfig(
        site="S",
        node="wn1",
        workdir=str(tmp_path),
        ca_dir=job_token.ca_dir,
        interval=0.05,
        base_env={"PATH": os.environ["PATH"]},
        kill_grace=2,
    )
    return JobAgent(
        AgentConfig(site="S", ce="CE", **config), run, central, None, connect_job, parse_job
    )


async def test_jobs_then_idle_exit(tmp_path, job_token):
    central = FakeCentral(
        [
            record(job_token, 1, 'Executable = "/bin/true";'),
            record(job_token, 2, 'Executable = "/bin/false";'),
        ]
    )
    agent = make_agent(tmp_path, job_token, central)
    assert await agent.run() == 0
    assert agent.finished == [(1, "DONE"), (2, "ERROR_E")]
    offer = next(c[1] for c in central.calls if c[0] == "getMatchJob")
    assert (offer.site, offer.ce, offer.cores, offer.node) == ("S", "CE", 1, "wn1")
    assert offer.ttl == 3600  # a job of the agent's full TTL still matches


def test_match_ttl_rounds_up_to_the_minute():
    assert match_ttl(3599.2, 3600) == 3600
    assert match_ttl(3540.0, 3600) == 3540
    assert match_ttl(3539.9, 3600) == 3540
    assert match_ttl(61, 3600) == 120
    assert match_ttl(10, 30) == 30


async def test_max_jobs_and_ttl(tmp_path, job_token):
    central = FakeCentral([record(job_token, i, 'Executable = "/bin/true";') for i in (1, 2)])
    agent = make_agent(tmp_path, job_token, central, max_jobs=1)
    assert await agent.run() == 0 and agent.finished == [(1, "DONE")]
    spent = make_agent(tmp_path, job_token, FakeCentral([]), ttl=0.5)
    assert await spent.run() == 0


async def test_pushed_kill_reaches_the_running_job(tmp_path, job_token):
    central = FakeCentral([record(job_token, 5, 'Executable = "/bin/sleep"; Arguments = "60";')])
    agent = make_agent(tmp_path, job_token, central, max_jobs=1)
    task = asyncio.ensure_future(agent.run())
    deadline = time.monotonic() + 30
    while agent.current is None or agent.current.payload is None:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    central.on_event(0, Event(topic="kill", payload={"queueId": "4"}))  # not ours: ignored
    assert agent.current is not None and not agent.current.killed
    central.on_event(0, Event(topic="kill", payload={"queueId": "5"}))
    assert await task == 0
    assert agent.finished == [(5, "KILLED")]


async def test_stop_aborts_the_job(tmp_path, job_token):
    central = FakeCentral([record(job_token, 6, 'Executable = "/bin/sleep"; Arguments = "60";')])
    agent = make_agent(tmp_path, job_token, central)
    task = asyncio.ensure_future(agent.run())
    while agent.current is None or agent.current.payload is None:
        await asyncio.sleep(0.02)
    agent.stop("the JobAgent got signal SIGTERM")
    assert await task == 0
    assert agent.finished == [(6, "ERROR_E")]


async def test_a_refused_agent_says_why(tmp_path, job_token):
    agent = make_agent(tmp_path, job_token, FakeCentral([], refuse=True))
    with pytest.raises(AgentError, match="only JobAgents get jobs"):
        await agent.run()


def test_parse_job_reads_the_jdl():
    jdl = (
        'Executable = "LF:/alice/bin/sim.sh"; Arguments = "-n 10 \\"a b\\"";\n'
        'InputFile = {"LF:/alice/in/a.C"};\n'
        'InputData = {"LF:/alice/d/1.root", "LF:/alice/d/2.root,nodownload"};\n'
        'OutputFile = {"log.txt@disk=2", "hist.root@ALICE::CERN::EOS"};\n'
        'OutputArchive = {"root_archive.zip:*.root,*.C@disk=1"};\n'
        'Packages = {"VO_ALICE@ROOT::v6-30"}; MemorySize = "2GB";\n'
        'WorkDirectorySize = {"5000MB"}; TTL = 7200;'
    )
    job = parse_job(MatchedJob(queue_id=12, user="jdoe", jdl=jdl, output_dir="/out/"))
    assert job.executable == "/alice/bin/sim.sh" and job.arguments == ["-n", "10", "a b"]
    assert job.inputs == ["/alice/in/a.C", "/alice/d/1.root"]
    assert [(o.name, o.specs, o.archive) for o in job.outputs] == [
        ("log.txt", "disk:2", False),
        ("hist.root", "ALICE::CERN::EOS", False),
        ("root_archive.zip", "disk:1", True),
    ]
    assert job.outputs[2].members == ["*.root", "*.C"]
    assert (job.memory, job.disk, job.ttl) == (2 << 30, 5000 << 20, 7200)
    assert job.packages == ["VO_ALICE@ROOT::v6-30"]
    with pytest.raises(ValueError, match="bad JDL"):
        parse_job(MatchedJob(queue_id=1, user="jdoe", jdl="Executable = ", output_dir="/o/"))


class ReconnectingCentral(FakeCentral):
    """Central away: a request waits for a reconnection that does not come (the real client
    waits up to the request's timeout, 60 s, while it retries with back-off)."""

    def __init__(self) -> None:
        super().__init__([])
        self.asked = asyncio.Event()
        self.cancelled = False

    async def request(self, request, timeout=None):
        self.asked.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return Reply()


async def test_stop_ends_an_idle_agent_waiting_on_a_reconnecting_central(tmp_path, job_token):
    """SIGTERM (stop) while the match waits for central: the agent ends at once, the match
    is dropped (an idle JobAgent ignored SIGTERM for over 17 s while reconnecting)."""
    central = ReconnectingCentral()
    agent = make_agent(tmp_path, job_token, central)
    running = asyncio.ensure_future(agent.run())
    await asyncio.wait_for(central.asked.wait(), 10)
    began = time.monotonic()
    agent.stop("the JobAgent got signal SIGTERM")
    assert await asyncio.wait_for(running, 5) == 0
    assert time.monotonic() - began < 1.0
    assert central.cancelled
