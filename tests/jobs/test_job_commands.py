"""Jobs through a real server: submit, ps, split, kill (pushed to the agent), resubmit,
and the sites' calls walking a job from WAITING to DONE; illegal moves refused."""

from __future__ import annotations

import asyncio

JDL = 'Executable = "/bin/echo"; Arguments = "hello"; TTL = 600;'
JDL_ARG = 'Executable = "/bin/echo"; Arguments = "hello $1"; TTL = 600;'


async def submit(client, text=JDL, *args):
    reply = await client.call("submit", "=<", text, *args)
    assert reply.exitcode == 0, reply.error
    return int(reply.results[0]["jobId"])


async def test_submit_ps_jobinfo_top(job_server, connect):
    c = await connect(job_server)
    job = await submit(c, JDL_ARG, "world")
    ps = await c.call("ps")
    assert ps.results[0]["id"] == str(job) and ps.results[0]["status"] == "WAITING"
    assert ps.results[0]["name"] == "echo"
    info = await c.call("jobinfo", str(job))
    assert info.results[0]["owner"] == "jdoe"
    jdl = await c.call("ps", "-jdl", str(job))
    assert "hello world" in jdl.results[0]["jdl"]  # stored with the arguments put in
    top = await c.call("top")
    assert top.results[0]["WAITING"] == "1"
    trace = await c.call("ps", "-trace", str(job))
    assert "WAITING" in trace.results[0]["message"]


async def test_bad_jdl_says_where(job_server, connect):
    c = await connect(job_server)
    reply = await c.call("submit", "=<", 'Executable = "x";\nTTL = ;')
    assert reply.exitcode == 22
    assert "line 2, column 7" in reply.error
    missing = await c.call("submit", "/alice/x.jdl")
    assert missing.exitcode == 2 and "needs storage" in missing.error


async def test_production_split_and_masterjob(job_server, connect):
    c = await connect(job_server)
    text = (
        'Executable = "sim.sh"; Arguments = "#alien_counter#"; Split = "production:1-5"; TTL = 100;'
    )
    master = await submit(c, text)
    info = await c.call("masterjob", str(master))
    assert info.results[0]["status"] == "SPLIT" and info.results[0]["subjobs"] == "5"
    subs = await c.call("masterjob", str(master), "-status", "WAITING")
    assert len(subs.results) == 6
    killed = await c.call("kill", str(master))
    assert killed.exitcode == 0
    assert (await c.call("ps", "-f", "KILLED")).results.__len__() == 5


async def test_file_split(job_server, connect):
    c = await connect(job_server)
    text = (
        'Executable = "ana.sh"; Split = "file"; InputData = {"LF:/a/1.root", '
        '"LF:/a/2.root", "LF:/b/3.root"};'
    )
    master = await submit(c, text)
    assert (await c.call("masterjob", str(master))).results[0]["subjobs"] == "3"
    text = text.replace('"file"', '"directory"')
    master = await submit(c, text)
    assert (await c.call("masterjob", str(master))).results[0]["subjobs"] == "2"


async def test_site_calls_walk_a_job_to_done(job_server, connect):
    user = await connect(job_server)
    events = []
    site = await connect(job_server, login="vobox", on_event=lambda ch, ev: events.append(ev))
    job = await submit(user)
    agent = ["site=CERN", "ce=ALICE::CERN::Fork", "ttl=3600", "cores=1"]
    assert (await site.call("getNumberWaitingJobs", *agent)).results[0]["count"] == "1"
    assert (await site.call("getNumberWaitingJobs", "ttl=60")).results[0]["count"] == "0"
    got = await site.call("getMatchJob", *agent)
    assert got.results[0]["queueId"] == str(job) and got.results[0]["user"] == "jdoe"
    assert "outputDir" in got.results[0]
    assert (await site.call("getMatchJob", *agent)).results[0]["queueId"] == ""
    for state in ("STARTED", "RUNNING", "SAVING", "SAVED"):
        reply = await site.call("setJobStatus", str(job), state, "node=wn01")
        assert reply.exitcode == 0, reply.error
    assert (await site.call("jobHeartbeat", str(job))).exitcode == 0
    illegal = await site.call("setJobStatus", str(job), "WAITING")
    assert illegal.exitcode == 22 and "SAVED -> WAITING is not allowed" in illegal.error
    assert (await site.call("setJobStatus", str(job), "DONE", "exitcode=0")).exitcode == 0
    assert (await user.call("ps", "-f", "DONE")).results[0]["node"] == "wn01"
    # plain users (jdoe is an admin in the test grid; alice is not) cannot get jobs or
    # change states
    alice = await connect(job_server, login="alice")
    assert (await alice.call("getMatchJob", *agent)).exitcode == 13
    other = await submit(alice)
    assert (await alice.call("setJobStatus", str(other), "ASSIGNED")).exitcode == 13


async def test_kill_is_pushed_to_the_agent(job_server, connect):
    user = await connect(job_server)
    events = []
    site = await connect(job_server, login="vobox", on_event=lambda ch, ev: events.append(ev))
    job = await submit(user)
    await site.call("getMatchJob", "ttl=3600")
    await site.call("setJobStatus", str(job), "STARTED")
    await site.call("setJobStatus", str(job), "RUNNING")
    assert (await user.call("kill", str(job))).exitcode == 0
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    assert events[0].topic == "kill" and events[0].payload == {"queueId": job}
    assert (await site.call("setJobStatus", str(job), "DONE")).exitcode == 22
    # a kill the agent did not hear (lost with its central): said again at its heartbeat
    events.clear()
    assert (await site.call("jobHeartbeat", str(job))).exitcode == 0
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    assert [e.topic for e in events] == ["kill"]


async def test_resubmit_failed_job(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    job = await submit(user)
    await site.call("getMatchJob", "ttl=3600")
    await site.call("setJobStatus", str(job), "STARTED")
    await site.call("setJobStatus", str(job), "ERROR_E", "exitcode=3", "error=segfault")
    assert (await user.call("resubmit", str(job))).exitcode == 0
    again = await site.call("getMatchJob", "ttl=3600")
    assert again.results[0]["queueId"] == str(job)
    alice = await connect(job_server, login="alice")
    assert (await alice.call("kill", str(job))).exitcode == 13  # not hers
    assert (await user.call("resubmit", "999999")).exitcode == 2


async def test_one_shot_submit_of_a_local_jdl(job_server, grid_pki, tmp_path, monkeypatch):
    import io

    from jalien.cli.shell import one_shot
    from tests.cli.test_shell import client_env

    for name, value in client_env(grid_pki, job_server, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JALIEN_CONFIG", raising=False)
    jdl = tmp_path / "local.jdl"
    jdl.write_text('Executable = "/bin/date"; TTL = 60;')

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        return one_shot(list(argv), out, err), out.getvalue(), err.getvalue()

    code, out, err = await asyncio.to_thread(run, "submit", f"file:{jdl}")
    assert code == 0 and out.startswith("Your new job ID is"), err
    code, _, err = await asyncio.to_thread(run, "submit", f"file:{tmp_path}/missing.jdl")
    assert code == 2 and "cannot read" in err
