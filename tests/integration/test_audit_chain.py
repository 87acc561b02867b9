"""The audit log on a whole chain of real processes: jcentral (embedded SE) <- a VoBox
(fork) <- a JobAgent whose payload calls the grid through the agent's local socket, and a
user with the binary channel and alien.py (WebSocket). Every request a level served is a
line of that level's audit log, and every request forwarded upward is a line at each level
it crossed, with the same command, arguments and exit code; a failing command (``ls`` of a
missing directory, from the payload and from alien.py) leaves a line with its exit code."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from jalien.auth.tls import client_context
from jalien.net.audit import FORWARDED, MAX_ARG
from jalien.net.client import Client
from jalien.roles.vobox import CACHE_TTL, STATUS_COMMAND
from jalien.storage.cp import copy
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.test_jcentral_process import alien
from tests.integration.test_site_chain import (
    _ERRORS,
    HOME,
    Site,
    submit,
    wait_states,
)

pytestmark = pytest.mark.integration

MISSING = f"{HOME}/no-such-dir-for-the-audit"
LOCAL = {*CACHE_TTL, STATUS_COMMAND}  # what a VoBox may answer without central
# sent on a timer, also while the levels stop (one may be cut at shutdown: "client gone")
PERIODIC = {"monitor.report"}
SCRIPT = """#!/bin/sh
set -e
tr a-z A-Z < in.txt > out.txt
{python} -m jalien whoami > whoami.txt
{python} -m jalien ls {missing} > ls.txt 2>&1 || echo "ls exit $?" >> ls.txt
"""
JDL = (
    f'Executable = "{HOME}/chain/job.sh";\n'
    f'InputFile = {{"LF:{HOME}/chain/in.txt"}};\n'
    'OutputFile = {"out.txt", "ls.txt"};\n'
    "TTL = 100;\n"
)


def records(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def by_level(site: Site) -> dict[str, list[dict]]:
    levels: dict[str, list[dict]] = {"jcentral": [], "vobox": [], "jobagent": []}
    home_logs = sorted((site.home / "log").glob("audit*.jsonl"))
    agent_logs = sorted(site.vobox_dir.glob("agents/*/log/audit*.jsonl"))
    for record in records(home_logs + agent_logs):
        levels[record["level"]].append(record)
    return levels


def key(record: dict) -> tuple:
    return (record["command"], tuple(record["args"]))


def forwarded_keys(lines: list[dict]) -> Counter:
    """What a level sent upward: its requests but the ones it answers itself."""
    return Counter(key(r) for r in lines if compared(r) and r["command"] not in LOCAL)


def compared(record: dict) -> bool:
    return record["event"] == "request" and record["command"] not in PERIODIC


def test_every_request_of_the_chain_is_in_the_audit_logs(tmp_path, alienpy):
    site = Site(tmp_path, {"JALIEN_BATCH": "fork"})
    ws_port = int(re.search(r"wss://[^:]+:(\d+)/", site.central_log.read_text())[1])

    async def go():
        user = site.user()
        await user.connect()
        src = site.tmp / "src"
        src.mkdir()
        (src / "in.txt").write_text("hello grid\n")
        (src / "job.sh").write_text(SCRIPT.format(python=sys.executable, missing=MISSING))
        files = [f"file:{src}/in.txt", f"file:{src}/job.sh"]
        up = await copy(user, files, f"{HOME}/chain/", site.options())
        assert up.exitcode == 0, [r.error for r in up.results]
        job = await submit(user, JDL)
        info = await wait_states(site, user, [job], {"DONE"} | _ERRORS)
        assert info[job]["status"] == "DONE", (info, site.logs())
        await user.close()
        return job

    try:
        job = asyncio.run(go())

        central = SimpleNamespace(  # what the alien.py helper needs
            globus=site.globus, ca_dir=site.home / "certificates", ws_port=ws_port
        )
        done = alien(alienpy, central, "ls", MISSING, tmp_path=tmp_path / "alienpy")
        assert done.returncode != 0, done.stdout + done.stderr
        # the agent ends after its job (JALIEN_JOBAGENT_MAX_JOBS=1); its lines are written
        # as they happen: wait for them rather than for the process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            levels = by_level(site)
            if any(r["command"] == "ls" for r in levels["jobagent"]):
                break
            time.sleep(0.2)
    finally:
        site.close()  # SIGTERM: each level writes what is pending
    levels = by_level(site)
    central, vobox, agent = levels["jcentral"], levels["vobox"], levels["jobagent"]
    assert central and vobox and agent, site.logs()

    # the payload's calls through the local socket: the job's identity, its exit codes
    payload = {r["command"]: r for r in agent}
    assert {"whoami", "ls"} <= set(payload), agent
    assert payload["whoami"]["exitcode"] == 0 and payload["whoami"]["kind"] == "job"
    assert payload["whoami"]["job"] == str(job) and payload["whoami"]["personality"] == "binary"
    failed = payload["ls"]
    assert failed["args"] == [MISSING] and failed["exitcode"] not in (0, FORWARDED)
    assert failed["error"], failed

    # every request of a lower level is a line of each level above it
    assert not forwarded_keys(agent) - forwarded_keys(vobox), (agent, vobox)
    at_central = [r for r in central if r["channel"] > 0]  # the VoBox's channels
    assert not forwarded_keys(vobox) - forwarded_keys(at_central), (vobox, at_central)
    # ... with the same exit code at each level
    for lower, upper in ((agent, vobox), (vobox, at_central)):
        codes = {key(r): r["exitcode"] for r in upper if compared(r)}
        for r in lower:
            if compared(r) and r["exitcode"] != FORWARDED and key(r) in codes:
                assert codes[key(r)] in (r["exitcode"], FORWARDED), (r, codes[key(r)])
    ls_up = [r for r in at_central if key(r) == ("ls", (MISSING,))]
    assert ls_up and ls_up[0]["exitcode"] == failed["exitcode"] and ls_up[0]["kind"] == "job"

    # the site's own calls: the agent's and the VoBox's
    kinds = {(r["command"], r["kind"]) for r in vobox}
    assert ("getMatchJob", "jobagent") in kinds, vobox
    assert ("setJobStatus", "jobagent") in kinds, vobox
    assert any(r["command"] == "getNumberWaitingJobs" for r in central)

    # the user: the JDL bounded, the commit envelopes masked, alien.py's failing ls
    (submitted,) = [r for r in central if r["command"] == "submit"]
    assert submitted["args"][0] == "=<" and len(submitted["args"][1]) <= MAX_ARG + 20
    commits = [r for r in central if r["command"] == "commit"]
    assert commits and all(r["args"][0].startswith("<masked: ") for r in commits)
    (from_alienpy,) = [
        r for r in central if r["personality"] == "websocket" and r["command"] == "ls"
    ]
    assert from_alienpy["args"][-1] == MISSING and from_alienpy["exitcode"] not in (0, "")
    assert from_alienpy["error"] and from_alienpy["login"] == "jdoe"

    for r in central + vobox + agent:
        assert r["time"].endswith("Z") and r["peer"] and r["kind"], r
        assert "-----BEGIN" not in json.dumps(r["args"]), r


def test_failing_command_in_jcentral_log_at_debug(tmp_path):
    """The symptom found on a real grid: a failing command left no line in jcentral's
    log, even at --log-level DEBUG. Now it leaves one in the audit log, and at DEBUG one
    readable line on the console too."""
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    log = tmp_path / "jcentral.log"
    binary = free_port()
    proc = start_central(home, log, free_port(), binary, env={"JALIEN_LOG_LEVEL": "DEBUG"})
    try:

        async def go():
            context = client_context(
                globus / "usercert.pem", globus / "userkey.pem", home / "certificates"
            )
            user = Client("127.0.0.1", binary, context, reconnect=False)
            await user.connect()
            reply = await user.call("ls", MISSING)
            await user.close()
            return reply

        reply = asyncio.run(go())
        assert reply.exitcode == 2, reply
        deadline = time.monotonic() + 10
        line = f"jdoe[admin] ls {MISSING} -> exit 2"
        while line not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert line in log.read_text(), log.read_text()[-3000:]
    finally:
        stop(proc)
    (record,) = [r for r in records([home / "log" / "audit.jsonl"]) if r["command"] == "ls"]
    assert record["exitcode"] == 2 and record["error"].startswith("No such file or directory")
    assert record["level"] == "jcentral" and record["args"] == [MISSING]
