"""Watching the grid with real processes: jcentral (embedded SE) <- a VoBox <- a fork
JobAgent running a user's job. The user spies on the running job from outside (central ->
VoBox -> JobAgent over the connections they have), central's and the VoBox's metrics show
the job's life and the requests, and the reports the VoBox and the JobAgent push upstream
make `gridstatus` and the per-minute history. An admin fetches the VoBox's and the running
job's JobAgent's recent log lines (`logs`, the same route as spy; JSON lines here, as
log_format = "json" asks); a plain user may not."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from jalien.auth.tls import client_context
from jalien.metrics import value
from jalien.net.client import Client
from jalien.storage.cp import copy
from tests.integration.conftest import free_port
from tests.integration.test_site_chain import CE, HOME, Site, submit, wait_states
from tests.integration.trustgrid import add_bob

# real processes, nothing twin-specific: run once, in the Cython pass (the suite's budget)
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]

SCRIPT = """#!/bin/sh
echo "payload says $1"
echo "to stderr" >&2
mkdir -p out && echo 42 > out/result.txt
sleep "$2"
"""


def jdl(marker: str, seconds: int) -> str:
    return (
        f'Executable = "{HOME}/mon/job.sh";\n'
        f'Arguments = "{marker} {seconds}";\n'
        f'InputFile = {{"LF:{HOME}/mon/in.txt"}};\n'
        "TTL = 100;\n"
    )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        return answer.read().decode()


async def until(check, seconds: float = 60.0, what: str = ""):
    deadline = time.monotonic() + seconds
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def test_spy_metrics_and_reports_through_the_chain(tmp_path, monkeypatch):
    central_metrics, vobox_metrics = free_port(), free_port()
    monkeypatch.setenv("JALIEN_METRICS_PORT", str(central_metrics))  # jcentral's environment
    monkeypatch.setenv("JALIEN_MONITOR_ROLLUP_INTERVAL", "1")
    web = free_port()
    monkeypatch.setenv("JALIEN_MONITOR_WEB_PORT", str(web))  # the page's state, below
    grid = Site(
        tmp_path,
        {
            "JALIEN_BATCH": "fork",
            "JALIEN_METRICS_PORT": str(vobox_metrics),
            "JALIEN_MONITOR_REPORT_INTERVAL": "1",
            "JALIEN_LOG_FORMAT": "json",  # the VoBox's lines, and its fork agents'
        },
    )

    async def go():
        user = grid.user()
        await user.connect()
        src = tmp_path / "src"
        src.mkdir()
        (src / "in.txt").write_text("hello grid\n")
        (src / "job.sh").write_text(SCRIPT)
        up = await copy(user, [f"file:{src}/in.txt", f"file:{src}/job.sh"], f"{HOME}/mon/",
                        grid.options())  # fmt: skip
        assert up.exitcode == 0, [r.error for r in up.results]
        job = await submit(user, jdl("spy-marker", 8))
        await wait_states(grid, user, [job], {"RUNNING"})

        async def spy(what: str) -> str:
            reply = await user.call("spy", str(job), what)
            return reply.results[0]["message"] if reply.exitcode == 0 else ""

        out = await until(lambda: _has(spy("stdout"), "payload says spy-marker"), what="stdout")
        assert "payload says spy-marker" in out
        await fetch_logs(grid, job)
        assert "to stderr" in await spy("stderr")
        listing = await spy("workdir")
        assert "in.txt" in listing and "out/result.txt" in listing, listing
        assert "host:" in await spy("nodeinfo")
        assert await spy("out/result.txt") == "42\n"
        bad = await user.call("spy", str(job), "../../../etc/passwd")
        assert bad.exitcode == 22
        outside = await user.call("spy", str(job), "nothing-here")
        assert outside.exitcode == 2 and "no file" in outside.error

        text = scrape(central_metrics)
        assert value(text, "jalien_jobs", state="RUNNING") == 1
        assert value(text, "jalien_request_duration_seconds_count", command="spy") >= 6
        assert value(text, "jalien_request_duration_seconds_count", command="spyReport") >= 6
        assert value(text, "jalien_request_failures_total", command="spy") >= 2
        assert value(text, "jalien_se_requests_total", method="PUT", status="201") or value(
            text, "jalien_se_requests_total", method="PUT", status="200"
        )
        site_text = scrape(vobox_metrics)
        assert value(site_text, "jalien_info", level="vobox", version=_version()) == 1
        assert value(site_text, "jalien_request_duration_seconds_count", command="getMatchJob")
        assert value(site_text, "jalien_loop_runs_total", loop="vobox-cycle") >= 1

        async def reported() -> str:
            reply = await user.call("gridstatus")
            message = reply.results[-1]["message"]
            return message if f"job {job}" in message and CE in message else ""

        status = await until(reported, what="the agent's report in gridstatus")
        assert "agents: 1" in status
        tls = client_context(grid.globus / "usercert.pem", grid.globus / "userkey.pem",
                             grid.home / "certificates")  # fmt: skip
        tls.check_hostname = False
        page_url = f"https://127.0.0.1:{web}/monitor/state.json"

        async def on_the_page() -> dict:
            with urllib.request.urlopen(page_url, context=tls, timeout=10) as answer:
                state = json.loads(answer.read())
            agents = [a for a in state["agents"] if a["job"] == job]
            running = state["jobs"]["by_state"].get("RUNNING") == 1
            # the page's state is cached a second, the rollup loop's first minute may follow it
            return state if agents and running and state["history"] else {}

        page = await until(on_the_page, what="the running job's agent and history on the page")
        assert [s["ce"] for s in page["sites"]] == [CE], page

        info = await wait_states(grid, user, [job], {"DONE", "ERROR_E", "KILLED", "EXPIRED"})
        assert info[job]["status"] == "DONE", (info, grid.logs())
        done = scrape(central_metrics)
        assert value(done, "jalien_jobs", state="DONE") == 1
        assert value(done, "jalien_loop_runs_total", loop="monitor-rollup") >= 1
        late = await user.call("spy", str(job), "stdout")
        assert late.exitcode == 2 and "only a running job" in late.error
        await user.close()

    try:
        asyncio.run(go())
    finally:
        grid.close()


async def fetch_logs(grid: Site, job: int) -> None:
    """`logs` from central: the VoBox's and the job's agent's last lines, as JSON lines."""
    admin = grid.user()  # the grid's first account has the admin role
    await admin.connect()

    async def vobox_lines() -> list[dict]:
        reply = await admin.call("logs", "vobox", CE, "-n", "5")
        if reply.exitcode:
            return []
        return [json.loads(line) for line in reply.results[0]["message"].splitlines()]

    lines = await until(vobox_lines, 20, "the VoBox's log lines")
    assert 0 < len(lines) <= 5 and {line["role"] for line in lines} == {"vobox"}, lines
    reply = await admin.call("logs", "job", str(job), "-n", "50")
    assert reply.exitcode == 0, reply.error
    agent = [json.loads(line) for line in reply.results[0]["message"].splitlines()]
    assert agent and {line["role"] for line in agent} == {"jobagent"}, agent
    assert any(line["logger"].startswith("jalien") for line in agent), agent
    gone = await admin.call("logs", "vobox", "ALICE::NOWHERE::CE")
    assert gone.exitcode == 2 and "is connected" in gone.error and CE in gone.error, gone.error
    await admin.close()
    pem = add_bob(grid.home)  # a plain user, in the running grid's accounts file
    (grid.tmp / "bob.pem").write_bytes(pem.cert)
    (grid.tmp / "bob.key").write_bytes(pem.key)
    (grid.tmp / "bob.key").chmod(0o600)
    tls = client_context(grid.tmp / "bob.pem", grid.tmp / "bob.key", grid.home / "certificates")
    bob = Client("127.0.0.1", grid.binary, tls, reconnect=False)
    await bob.connect()
    for words in (("vobox", CE), ("job", str(job))):
        refused = await bob.call("logs", *words)
        assert refused.exitcode == 13 and "Permission denied" in refused.error, refused.error
    await bob.close()


async def _has(text_coro, needle: str) -> str:
    text = await text_coro
    return text if needle in text else ""


def _version() -> str:
    from jalien.version import __version__

    return __version__
