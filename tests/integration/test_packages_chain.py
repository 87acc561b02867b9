"""Packages the ALICE way, with real processes: jcentral, a VoBox whose worker nodes have no
packages and, later, a second VoBox whose nodes see a CVMFS-layout tree (two packages, one
loading the other through its modulefile, an executable each). A job with Packages waits
while only the bare site asks (and says why), then runs on the node with the tree with the
modules' environment; a plain job runs on the bare site; a job asking for a package no
node has keeps waiting with the reason; ``packages`` lists the grid's, through alien.py
1.7.0 and jalien-bin too."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import copy
from jalien.wire import packages as names
from jalien.wire import site_api
from jalien.wire.messages import Request
from jalien.wire.site_api import JobOffer
from tests.agent.alice_tree import ARCH, LISTING, make_tree, need_modulecmd
from tests.integration.conftest import jalien_bin, run_user, start_embedded_grid, stop
from tests.integration.test_jcentral_process import alien
from tests.integration.test_site_chain import CE, HOME, Site, submit, wait_states

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]  # no twin involved: once

PKG_CE = "JALIEN::PACKAGES::CE"
SCRIPT = """#!/bin/sh
set -e
analysis-run > out.txt
echo "root=$ANALYSIS_ROOT" >> out.txt
"""


def pkg_jdl(packages: str) -> str:
    return (
        f'Executable = "{HOME}/pkg/job.sh";\n'
        f"Packages = {{{packages}}};\n"
        'OutputFile = {"out.txt"};\n'
        "TTL = 100;\n"
    )


PLAIN = 'Executable = "/bin/echo";\nArguments = "plain";\nOutputFile = {"stdout"};\nTTL = 100;\n'


def second_vobox(grid: Site, tree: str) -> subprocess.Popen:
    """A VoBox of another CE on the same central, its agents seeing the package tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
    (grid.tmp / "wn2").mkdir()
    env.update(
        PYTHONUNBUFFERED="1",
        TMPDIR=str(grid.tmp / "tmpdir"),
        JALIEN_VOBOX_DIR=str(grid.tmp / "vobox2"),
        JALIEN_CE=PKG_CE,
        JALIEN_BATCH="fork",
        JALIEN_SUBMIT_INTERVAL="0.5",
        JALIEN_AGENT_START_GRACE="5",
        JALIEN_JOBAGENT_TTL="300",
        JALIEN_WORKDIR=str(grid.tmp / "wn2"),
        JALIEN_PACKAGES_DIR=tree,
        JALIEN_JOBAGENT_ENV="JALIEN_MONITOR_INTERVAL=0.5,JALIEN_JOBAGENT_MAX_JOBS=1",
    )
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
    out = open(grid.tmp / "vobox2.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*jalien_bin(), "--role", "vobox", "--home", str(grid.home),
         "--central", f"127.0.0.1:{grid.binary}", "--listen", "127.0.0.1"],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def test_a_package_job_runs_only_where_its_packages_are(site, tmp_path):
    need_modulecmd()
    tree = make_tree(tmp_path / "cvmfs")
    grid = site(JALIEN_BATCH="fork")  # its nodes have no packages

    async def go():
        user = grid.user()
        await user.connect()
        src = tmp_path / "src"
        src.mkdir()
        (src / "job.sh").write_text(SCRIPT)
        up = await copy(user, [f"file:{src}/job.sh"], f"{HOME}/pkg/", grid.options())
        assert up.exitcode == 0, [r.error for r in up.results]
        wanted = await submit(user, pkg_jdl('"VO_ALICE@Analysis::v2-1"'))
        nowhere = await submit(user, pkg_jdl('"VO_ALICE@Analysis::v9-9"'))
        plain = await submit(user, PLAIN)
        info = await wait_states(grid, user, [plain], {"DONE"})
        assert info[plain]["ce"] == CE
        for job in (wanted, nowhere):  # the bare site's agents never took them
            row = (await user.call("jobinfo", str(job))).results[0]
            assert row["status"] == "WAITING", (row, grid.logs())
        trace = (await user.call("ps", "-trace", str(wanted))).results[0]["message"]
        assert "waiting: no site offers VO_ALICE@Analysis::v2-1" in trace, trace
        vobox2 = second_vobox(grid, str(tree))
        try:
            info = await wait_states(grid, user, [wanted], {"DONE", "ERROR_IB", "ERROR_E"})
            log = (tmp_path / "vobox2.log").read_text(errors="replace")
            assert info[wanted]["status"] == "DONE", (info, log[-3000:], grid.logs())
            assert info[wanted]["ce"] == PKG_CE
            dest = tmp_path / "out"
            outdir = info[wanted].get("outputDir") or f"{HOME}/alien-job-{wanted}/"
            down = await copy(user, [f"{outdir}out.txt"], f"file:{dest}/", grid.options())
            assert down.exitcode == 0, [r.error for r in down.results]
            packages = tree / ARCH / "Packages"
            assert (dest / "out.txt").read_text() == (
                "genlib v1-1 says from analysis\n"  # the dependency's executable, on PATH
                f"analysis v2-1 with GenLib v1-1 at {packages}/GenLib/v1-1\n"
                f"root={packages}/Analysis/v2-1\n"
            )
            trace = (await user.call("ps", "-trace", str(wanted))).results[0]["message"]
            assert f"packages VO_ALICE@Analysis::v2-1 from {tree}/{ARCH}" in trace, trace
            row = (await user.call("jobinfo", str(nowhere))).results[0]
            assert row["status"] == "WAITING", row  # no node has v9-9
            match = (await user.call("jobListMatch", str(nowhere))).results[0]["message"]
            assert "no site offers VO_ALICE@Analysis::v9-9" in match, match
            listed = await user.call("packages")
            assert [r["packages"] for r in listed.results] == LISTING
        finally:
            stop(vobox2)
        await user.close()

    asyncio.run(go())


@pytest.fixture
def site(tmp_path):
    made: list[Site] = []

    def start(**batch_env: str) -> Site:
        made.append(Site(tmp_path, batch_env))
        return made[-1]

    yield start
    for each in made:
        each.close()


def test_packages_through_alienpy_and_jalien_bin(alienpy, tmp_path):
    """``packages`` as alien.py 1.7.0 and jalien-bin show it, after a site's VoBox (the host
    certificate, the proxy role) advertised a listing with its offer."""
    grid = start_embedded_grid(tmp_path / "grid")
    try:
        empty = alien(alienpy, grid, "packages", tmp_path=tmp_path / "a")
        assert empty.returncode == 1 and "Couldn't find any packages" in empty.stdout + empty.stderr
        host = grid.home / "host"
        context = client_context(host / "hostcert.pem", host / "hostkey.pem", grid.ca_dir)

        async def advertise() -> None:
            site = Client("127.0.0.1", grid.binary_port, context, reconnect=False)
            await site.connect()
            offer = JobOffer(site="ALICE::T", ce="ALICE::T::CE", packages=LISTING,
                             packages_digest=names.digest(LISTING))  # fmt: skip
            request = Request(command="getNumberWaitingJobs", data=[site_api.encode(offer)])
            reply = await site.request(request)
            assert reply.exitcode == 0, reply.error
            await site.close()

        asyncio.run(advertise())
        listed = alien(alienpy, grid, "packages", tmp_path=tmp_path / "b")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert [line.strip() for line in listed.stdout.splitlines() if line.strip()] == LISTING
        code, out, err = run_user(grid, tmp_path, "packages", "-l", "GenLib*")
        assert code == 0, out + err
        assert out.splitlines()[0].split() == ["VO_ALICE@GenLib::v1-0", "ALICE::T", "ALICE::T::CE"]
    finally:
        stop(grid.proc)
