"""ps, masterjob and jobListMatch the JAliEn way: its -f letters and short state codes,
the optional-argument -trace/-jdl (alien.py's jobInfo sends ``ps -j ID -trace -jdl``), the
record keys alien.py reads, usage and exit codes on bad options."""

from __future__ import annotations

import pytest

from jalien.commands.job_cmds import (
    DONE_STATES,
    ERROR_STATES,
    FLAG_GROUPS,
    optional_values,
    ps_line,
    short_code,
    states_of,
)
from jalien.jobs.states import JobState
from jalien.jobs.store import JobRow
from jalien.wire.errors import RequestError
from tests.jobs.test_job_commands import JDL, submit

S = JobState


def row(**kw) -> JobRow:
    base = dict(
        id=42, master=0, user="jdoe", state="WAITING", jdl=JDL, requirements="", packages="",
        ttl=600, cores=1, memory=0, price=1.0, site="", ce="", node="", submitted=0,
        started=0, finished=0, heartbeat=0, exit_code=0, error="", resubmits=0,
        split_index=0, output_dir="",
    )  # fmt: skip
    base.update(kw)
    return JobRow(**base)


def test_short_codes_are_jaliens():
    assert [short_code(s) for s in ("DONE", "RUNNING", "ERROR_E", "SAVED", "WAITING")] == [
        "  D", "  R", " EE", "SVD", "  W",
    ]  # fmt: skip
    assert all(len(short_code(s.value)) == 3 for s in JobState)
    assert short_code("NONSENSE") == "NUL"


def test_ps_line_prints_codes_not_names():
    line = ps_line(row(state="DONE"), "echo")
    assert line == f"{'jdoe':>10} {42:>10}  ___    D  {'echo':>32}"
    waiting = ps_line(row(), "echo")
    assert "    1    W  " in waiting  # the priority shows while the job waits
    long = ps_line(row(state="RUNNING", site="CERN", node="wn01"), "echo", long=True)
    assert "CERN" in long and "wn01" in long and "  R  " in long


@pytest.mark.parametrize(
    ("value", "states"),
    [
        ("d", DONE_STATES),
        ("-d", DONE_STATES),
        ("f", ERROR_STATES),
        ("r", FLAG_GROUPS["r"]),
        ("s", FLAG_GROUPS["s"]),
        ("ds", DONE_STATES | FLAG_GROUPS["s"]),
        ("a", None),
        ("DONE", {S.DONE}),
        ("D", {S.DONE}),
        ("R,EE", {S.RUNNING, S.ERROR_E}),
        ("done_any", DONE_STATES),
        ("ERROR_ALL", ERROR_STATES),
        ("%", None),
        ("ANY", None),
    ],
)
def test_state_selection(value, states):
    assert states_of(value) == (None if states is None else frozenset(states))


def test_unknown_state_is_einval():
    with pytest.raises(RequestError) as exc:
        states_of("NOPE")
    assert exc.value.exitcode == 22


def test_optional_arguments():
    assert optional_values(["-j", "5", "-trace", "-jdl"], ("trace", "jdl")) == (
        ["-j", "5"],
        {"trace": "", "jdl": ""},
    )
    assert optional_values(["-trace", "7"], ("trace", "jdl")) == ([], {"trace": "7"})
    assert optional_values(["-jdl=8", "-f", "d"], ("trace", "jdl")) == (["-f", "d"], {"jdl": "8"})


async def test_jobinfo_query_of_alienpy(job_server, connect):
    c = await connect(job_server)
    job = await submit(c)
    reply = await c.call("ps", "-nomsg", "-j", str(job), "-trace", "-jdl")
    assert reply.exitcode == 0, reply.error
    rec = reply.results[0]
    for key in ("id", "split", "status", "owner", "name", "trace", "jdl"):
        assert key in rec, key
    assert rec["id"] == rec["id "] == str(job) and rec["split"] == "0"
    assert "[trace     ]: submitted" in rec["trace"] and "/bin/echo" in rec["jdl"]
    trace = await c.call("ps", "-trace", str(job))
    assert trace.results[0]["trace"] == rec["trace"]
    assert (await c.call("ps", "-trace", "999999")).exitcode == 2  # no such job


async def test_ps_options_of_jalien(job_server, connect):
    c = await connect(job_server)
    jobs = [await submit(c) for _ in range(2)]
    await c.call("kill", str(jobs[0]))
    listing = await c.call("ps")
    assert [r["status"] for r in listing.results] == ["WAITING", "KILLED"]  # full in JSON
    assert "  K  " in listing.results[1]["message"]  # JAliEn's code in the text
    assert [r["id"] for r in (await c.call("ps", "-f", "s")).results] == [str(jobs[1])]
    assert [r["id"] for r in (await c.call("ps", "-f", "K")).results] == [str(jobs[0])]
    assert (await c.call("ps", "-f", "d")).results == []
    assert len((await c.call("ps", "-f", "a")).results) == 2
    ids = await c.call("ps", "-id")
    assert [r["message"] for r in ids.results] == [str(j) for j in reversed(jobs)]
    assert len((await c.call("ps", "-L", "-q", "x", "-u", "jdoe,alice")).results) == 2
    assert len((await c.call("ps", "-Fl", "-s", "CERN,GSI", "-a")).results) == 0
    bad = await c.call("ps", "-Z")
    assert bad.exitcode == 22 and "usage: ps" in bad.error and "-Z" in bad.error


async def test_masterjob_printid_printsite(job_server, connect):
    c = await connect(job_server)
    text = 'Executable = "sim.sh"; Split = "production:1-3"; TTL = 100;'
    master = await submit(c, text)
    plain = await c.call("masterjob", str(master))
    assert plain.results[0]["count_WAITING"] == "3" and len(plain.results) == 1
    printid = await c.call("masterjob", str(master), "-printid")
    ids = printid.results[0]["ids_WAITING"].split(",")
    assert len(ids) == 3 and f"(ids: {','.join(ids)})" in printid.results[0]["message"]
    printsite = await c.call("masterjob", str(master), "-printsite")
    assert "1 sites" in printsite.results[0]["message"]
    assert (await c.call("masterjob")).exitcode == 22
    bad = await c.call("masterjob", str(master), "-nope")
    assert bad.exitcode == 22 and "usage: masterjob" in bad.error


async def test_job_list_match(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    job = await submit(user)
    none = await user.call("jobListMatch", str(job))
    assert none.exitcode == 0 and "No site has asked" in none.results[0]["message"]
    await site.call("getNumberWaitingJobs", "site=CERN", "ce=ALICE::CERN::Fork", "ttl=3600")
    await site.call("getNumberWaitingJobs", "site=Short", "ce=ALICE::Short::Fork", "ttl=60")
    found = await user.call("jobListMatch", str(job))
    assert [r.get("ce") for r in found.results[1:]] == ["ALICE::CERN::Fork"]
    usage = await user.call("jobListMatch")
    assert usage.exitcode == 22 and "usage: jobListMatch" in usage.error


class _Catalogue:
    """The one call registerOutput makes: get(lfn)."""

    def __init__(self, files: set[str]) -> None:
        self.files = files

    async def get(self, path):
        from jalien.catalogue.model import Entry

        if path not in self.files:
            return None
        directory, _, name = path.rpartition("/")
        return Entry(dir=directory + "/", name=name)


async def test_register_output(make_server, taskqueue, connect):
    from jalien.commands.job_cmds import JobCommands
    from jalien.jobs.broker import Broker
    from jalien.jobs.service import JobService

    jobs = JobService(taskqueue, Broker())
    await jobs.start()
    files = {"/alice/cern.ch/user/j/jdoe/alien-job-1/out.txt"}
    server = await make_server(
        add_commands=lambda t: JobCommands(t, jobs, catalogue=_Catalogue(files)).register()
    )
    user = await connect(server)
    text = 'Executable = "/bin/echo"; OutputFile = {"out.txt", "log.txt"}; TTL = 600;'
    job = await submit(user, text)
    assert job == 1
    waiting = await user.call("registerOutput", str(job))
    assert waiting.exitcode == 22 and "is in state WAITING" in waiting.error
    vobox = await connect(server, login="vobox")
    await vobox.call("getMatchJob", "site=CERN", "ce=ALICE::CERN::Fork", "ttl=3600")
    for state in ("STARTED", "RUNNING", "ERROR_V"):
        assert (await vobox.call("setJobStatus", str(job), state)).exitcode == 0
    done = await user.call("registerOutput", str(job))
    assert done.exitcode == 0, done.error
    assert [r["message"] for r in done.results] == [f"  {next(iter(files))}"]
    alice = await connect(server, login="alice")
    refused = await alice.call("registerOutput", str(job))
    assert refused.exitcode == 1 and "not allowed to work on jdoe's jobs" in refused.error
    assert (await user.call("registerOutput", "x")).exitcode == 22
    assert (await user.call("registerOutput")).exitcode == 22
    assert (await user.call("registerOutput", "999")).exitcode == 2


def test_job_list_match_sees_the_agents_that_asked_another_worker():
    """jcentral's workers share the agents that asked (the role's cache): one written at
    most every SHARED_EVERY seconds per (site, CE), the latest seen winning."""
    from jalien.commands import job_cmds
    from jalien.commands.table import CommandTable
    from jalien.jobs.broker import Agent

    class Store:
        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}
            self.puts = 0

        def put(self, key: bytes, value: bytes, ttl: float) -> None:
            self.data[key] = value
            self.puts += 1

        def scan(self) -> list[tuple[bytes, bytes]]:
            return list(self.data.items())

    shared = Store()
    first = job_cmds.JobCommands(CommandTable(), None)  # type: ignore[arg-type]
    second = job_cmds.JobCommands(CommandTable(), None)  # type: ignore[arg-type]
    first.shared_seen = second.shared_seen = shared
    asking = Agent(site="S", ce="S::CE", ttl=3600, packages=frozenset({"VO_ALICE@ROOT::6"}))
    first._seen(asking)
    first._seen(asking)  # again at once: not written again
    assert shared.puts == 1
    seen = second._asked()
    assert list(seen) == [("S", "S::CE")]
    assert seen[("S", "S::CE")][0] == asking
