"""Placement rules, SE decommissioning and the dark-data crawl against real processes:
jcentral with its embedded SE (HTTPS), a second jalien SE process, and two Debian xrootd
servers on loopback. A rule is satisfied after a commit; an XRootD SE is drained from start
to done with a jcentral restart halfway; a crawl of the embedded SE and of an xrootd SE
finds exactly the dark and lost files injected, and the dark ones are removed after their
grace period; bad input (an unknown SE, a rule that cannot be satisfied) changes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from jalien.net.client import Client
from jalien.storage.cp import copy
from tests.integration.conftest import stop
from tests.integration.test_cp_process import FAR, NEAR, make_files, opts
from tests.integration.test_cp_xrootd import XRD1, XRD2, XGrid

# real processes, nothing twin-specific (the sandwich twins are compared in tests/datamovers):
# run once, in the Cython pass (the suite's budget)
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]
HOME = "/alice/cern.ch/user/j/jdoe/"
FAST = {  # the loops this test follows, at test pace; the crawl only when asked
    "JALIEN_TRANSFER_INTERVAL": "0.3",
    "JALIEN_DELETION_INTERVAL": "0.3",
    "JALIEN_DELETION_BACKOFF": "0.3",
    "JALIEN_DECOMMISSION_INTERVAL": "0.3",
    "JALIEN_RULES_INTERVAL": "3600",
    "JALIEN_DARKDATA_INTERVAL": "0",
    "JALIEN_DARKDATA_GRACE": "1",
}


class LGrid(XGrid):
    """XGrid whose jcentral runs the data movers' loops fast, and can be restarted."""

    def _spawn(self, args, log, env):
        if "jcentral" in args:
            env = {**env, **FAST}
            self._central_args = (args, log, env)
        return super()._spawn(args, log, env)

    def restart_central(self):
        stop(self.central)
        args, log, env = self._central_args
        before = log.read_text(errors="replace").count("jcentral ready")
        self.central = super()._spawn(args, log, env)
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("jcentral ready") <= before:
            assert self.central.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


@pytest.fixture(scope="module")
def lgrid(tmp_path_factory):
    g = LGrid(tmp_path_factory.mktemp("lifecycle"))
    yield g
    g.close()
    assert "Traceback" not in g.central_log.read_text(errors="replace")


async def connect(grid) -> Client:
    client = Client("127.0.0.1", grid.binary, grid.user_ssl(), reconnect=False)
    await client.connect()
    return client


async def ok(client, *words):
    reply = await client.call(*words, timeout=60)
    assert reply.exitcode == 0, (words, reply.error)
    return reply


async def _register(grid) -> None:
    client = await connect(grid)
    try:
        far = f"https://127.0.0.1:{grid.se2}/se"
        await ok(client, "addSE", "-site", "FAR", "-qos", "disk", FAR, far)
        await ok(client, "addSE", "-site", "LOCAL", "-qos", "disk", XRD1, grid.xrd[XRD1].url)
        await ok(client, "addSE", "-site", "FAR", "-qos", "disk,t1disk", XRD2, grid.xrd[XRD2].url)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def registered(lgrid):
    asyncio.run(_register(lgrid))
    return lgrid


async def until(what, check, timeout=40.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: never happened"
        await asyncio.sleep(0.1)


async def ses_of(client, lfn):
    where = await client.call("whereis", lfn)
    return {r["seName"] for r in where.results} if where.exitcode == 0 else set()


async def upload(client, grid, tmp_path, names, specs, size=20_000):
    make_files(tmp_path, names, size=size)
    for name in names:
        up = await copy(client, [f"file:{tmp_path}/{name}"], name, opts(grid, specs=specs))
        assert up.exitcode == 0, up.results[0].error


async def test_bad_input_changes_nothing(registered):
    client = await connect(registered)
    try:
        for words, text in (
            (("addRule", "x", "/a/*", "3", "-qos", "t1disk"), "cannot be satisfied"),
            (("addRule", "x", "/a/*", "1", "-se", "ALICE::NO::SE"), "no such SE"),
            (("seDecommission", "ALICE::NO::SE"), "no such SE"),
            (("seCheck", "ALICE::NO::SE"), "no such SE"),
            (("removeRule", "nope"), "no such rule"),
        ):
            reply = await client.call(*words)
            assert reply.exitcode != 0 and text in reply.error, (words, reply.error)
        assert "no placement rules" in (await ok(client, "listRules")).results[0]["message"]
        status = await ok(client, "seDecommission", "-status")
        assert "no SE is being decommissioned" in status.results[0]["message"]
    finally:
        await client.close()


async def test_rule_satisfied_after_commit(registered, tmp_path):
    grid = registered
    client = await connect(grid)
    try:
        await ok(client, "addRule", "raw-t1", HOME + "raw/*", "1", "-qos", "t1disk")
        await upload(client, grid, tmp_path, ["raw/r1.root", "other/o1.root"], NEAR)
        # the commit queued the copy: it lands on the one T1 disk SE
        await until("r1 on the T1", lambda: _has(client, "raw/r1.root", XRD2))
        assert await ses_of(client, "other/o1.root") == {NEAR}
        rules = (await ok(client, "listRules")).results[1]
        assert rules["name"] == "raw-t1" and rules["transfers"] == "1", rules
        await ok(client, "removeRule", "raw-t1")
    finally:
        await client.close()


async def _has(client, lfn, se):
    return se in await ses_of(client, lfn)


def _pfn_path(pfn: str) -> str:
    return "/" + pfn.split("://", 1)[1].split("/", 1)[1].lstrip("/")


async def test_crawl_finds_exactly_the_injected(registered, tmp_path):
    grid = registered
    client = await connect(grid)
    try:
        names = [f"dd/f{i}.root" for i in range(4)]
        await upload(client, grid, tmp_path, names, f"{NEAR},{XRD1}", size=5_000)
        embedded_root = grid.home / "se"  # the embedded SE's files: <root>/<PFN path>
        xroot = grid.xrd[XRD1]
        dark = {NEAR: [], XRD1: []}
        for se, base in ((NEAR, embedded_root / "se"), (XRD1, xroot.data)):
            for _ in range(2):  # files the catalogue never heard of
                path = base / "07" / "12345" / str(uuid.uuid1())
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"dark")
                for p in (path, path.parent, path.parent.parent):  # the xrootd user's too
                    p.chmod(0o777)
                dark[se].append(
                    "/" + str(path.relative_to(embedded_root if se == NEAR else xroot.data))
                )
        lost = {}
        for se, lfn in ((NEAR, names[0]), (XRD1, names[1])):  # replicas whose file went
            where = await ok(client, "whereis", lfn)
            pfn = next(r["pfn"] for r in where.results if r["seName"] == se)
            on_disk = (embedded_root if se == NEAR else xroot.data) / _pfn_path(pfn).lstrip("/")
            on_disk.unlink()
            lost[se] = _pfn_path(pfn)
        for se in (NEAR, XRD1):
            report = (await ok(client, "seCheck", se)).results[0]
            assert (report["dark"], report["lost"]) == ("2", "1"), report
        found = (await ok(client, "seCheck", "-report")).results[1:]
        got_dark = {(r["se"], r["path"]) for r in found if r["kind"] == "dark"}
        got_lost = {(r["se"], r["path"]) for r in found if r["kind"] == "lost"}
        assert got_dark == {(se, p) for se, ps in dark.items() for p in ps}
        assert got_lost == set(lost.items())
        # after the grace period (1 s here) the dark files are removed from the SEs
        await asyncio.sleep(1.1)
        purged = (await ok(client, "seCheck", "-purge")).results[0]["message"]
        assert purged.startswith("4 "), purged
        gone = [embedded_root / p.lstrip("/") for p in dark[NEAR]]
        gone += [xroot.data / p.lstrip("/") for p in dark[XRD1]]

        async def removed():
            return not any(p.exists() for p in gone)

        await until("dark files removed", removed)
        for name in names[2:]:  # what is registered stays
            assert await ses_of(client, name) == {NEAR, XRD1}
    finally:
        await client.close()


async def test_decommission_start_to_done_with_a_restart(registered, tmp_path):
    grid = registered
    client = await connect(grid)
    names = [f"drain/f{i}.root" for i in range(5)]
    await upload(client, grid, tmp_path, names, XRD1, size=10_000)
    await upload(client, grid, tmp_path, ["drain/both.root"], f"{XRD1},{NEAR}", size=10_000)
    started = await ok(client, "seDecommission", XRD1)
    assert started.results[0]["state"] == "READ_ONLY"

    async def state():
        reply = await ok(client, "seDecommission", "-status", XRD1)
        return reply.results[1]["state"]

    await until("copies queued", lambda: _state_in(state, {"WAITING", "DROPPING", "DONE"}))
    await client.close()
    grid.restart_central()  # halfway: the machine resumes from lifecycle.db
    client = await connect(grid)
    try:
        await until("drained", lambda: _state_in(state, {"DONE"}), timeout=60)
        status = (await ok(client, "seDecommission", "-status", XRD1)).results[1]
        assert "files_stuck" not in status and int(status["files_dropped"]) >= 6, status
        for name in [*names, "drain/both.root"]:
            ses = await ses_of(client, name)
            assert XRD1 not in ses and ses, (name, ses)
        # the SE takes no new file
        make_files(tmp_path, ["drain/late.root"], size=100)
        late = await copy(client, [f"file:{tmp_path}/drain/late.root"], "drain/late.root",
                          opts(grid, specs=XRD1))  # fmt: skip
        assert late.exitcode != 0
        mirror = await client.call("mirror", names[0], XRD1)  # nor a mirror: nothing queued
        assert mirror.exitcode == 22 and "is being decommissioned" in mirror.error, mirror.error
        assert XRD1 not in await ses_of(client, names[0])
        # and its PFNs are removed from it
        xroot = grid.xrd[XRD1]
        await until("PFNs removed", lambda: _none_left(xroot.data))
    finally:
        await client.close()


async def test_recovery_of_a_lost_se(registered, tmp_path):
    grid = registered
    client = await connect(grid)
    try:
        await upload(client, grid, tmp_path, ["lost/only.root"], XRD2)
        await upload(client, grid, tmp_path, ["lost/both.root"], f"{XRD2},{NEAR}")
        for path in grid.xrd[XRD2].data.rglob("*"):  # the SE's disks are gone
            if path.is_file():
                path.unlink()
        await ok(client, "addRule", "two-disks", HOME + "lost/*", "2", "-qos", "disk")
        started = await ok(client, "seDecommission", "-lost", XRD2)
        assert started.results[0]["mode"] == "lost"

        async def done():
            reply = await ok(client, "seDecommission", "-status", XRD2)
            return reply if reply.results[1]["state"] == "DONE" else None

        status = await until("recovered", done, timeout=60)
        lost = [r["lfn"] for r in status.results[2:] if r["state"] == "LOST"]
        assert lost == [HOME + "lost/only.root"], status.results
        assert "lost/only.root" in status.results[0]["message"]
        # the other file: its replica there unregistered, a new one made for the rule
        await until("re-replicated", lambda: _ses_are(client, "lost/both.root", {NEAR, FAR}))
    finally:
        await client.close()


async def _ses_are(client, lfn, wanted):
    return await ses_of(client, lfn) == wanted


async def _state_in(state, wanted):
    return await state() in wanted


async def _none_left(root):
    return not [p for p in root.rglob("*") if p.is_file()]
