"""The catalogue optimizers in a real jcentral on the sharded MariaDB catalogue (two real
servers): the loops and every server's pools in `background`, the LFN-table alarm in
optimiserLogs, moveDirectory to the other server through the command while the files stay
listed, the interval changed with optimiserLogs -f; refusals to a plain user."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.catalogue.mariadb_servers import mariadb_dsns, mariadb_servers  # noqa: F401
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.trustgrid import Pem, TrustGrid, add_bob

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]  # no twin involved: once
HOME = "/alice/cern.ch/user/j/jdoe/"


async def until(client, check, *words: str, tries: int = 300):
    for _ in range(tries):  # bounded: the optimizer runs each second here
        reply = await client.call(*words, timeout=30)
        if check(reply):
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError(f"{words}: never got there: {reply.results}")


async def test_optimizers_in_jcentral_on_mariadb(mariadb_dsns, tmp_path):  # noqa: F811
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    bob_pem = add_bob(home)
    config = tmp_path / "jalien.toml"
    config.write_text(
        'catalogue_backend = "mariadb"\n'
        "lfn_table_max_rows = 10\noptimizer_lfn_interval = 1.0\n"
        f"[catalogue_mariadb]\nhosts = {json.dumps(mariadb_dsns)}\n"
        "index_ttl = 1.0\nsplit_chunk = 7\n"
    )
    port = free_port()
    log = tmp_path / "jcentral.log"
    proc = start_central(home, log, free_port(), port, env={"JALIEN_CONFIG": str(config)})
    grid = TrustGrid(home, globus, port)
    try:
        admin = await grid.connect(
            Pem((globus / "usercert.pem").read_bytes(), (globus / "userkey.pem").read_bytes())
        )
        bob = await grid.connect(bob_pem)
        assert (await admin.call("mkdir", "-p", HOME + "data/sub")).exitcode == 0
        for i in range(12):
            assert (await admin.call("touch", f"{HOME}data/sub/f{i}")).exitcode == 0
        seen = {r["name"] for r in (await admin.call("background")).results}
        assert {"guid-tables", "lfn-tables", "mariadb0-read", "mariadb0-write"} <= seen, seen
        assert {"mariadb-tx", "optimiserlog-write"} <= seen, seen

        alarm = await until(
            admin,
            lambda r: any(x.get("level") == "alarm" for x in r.results),
            "optimiserLogs",
            "lfn-tables",
        )
        assert "L0L" in alarm.results[-1]["log"]

        moved = await admin.call("moveDirectory", HOME + "data", "1", timeout=120)
        assert moved.exitcode == 0, moved.error
        assert "entries moved" in moved.results[0]["message"]
        listed = await admin.call("ls", HOME + "data/sub")
        assert sorted(e.name for e in listed.entries) == sorted(f"f{i}" for i in range(12))
        assert (await admin.call("touch", HOME + "data/sub/after")).exitcode == 0
        seen = {r["name"] for r in (await admin.call("background")).results}
        assert {"mariadb1-read", "mariadb1-write"} <= seen, seen  # the new table's server
        logs = await admin.call("optimiserLogs", "-v", "-n", "3", "lfn-split")
        assert logs.exitcode == 0 and "entries moved" in logs.results[-1]["log"]

        changed = await admin.call("optimiserLogs", "-f", "7200", "lfn-tables")
        assert changed.exitcode == 0
        loops = {r["name"]: r for r in (await admin.call("background")).results}
        assert loops["lfn-tables"]["interval"] == "7200"

        for words in (("moveDirectory", HOME + "data"), ("optimiserLogs", "-f", "5")):
            refused = await bob.call(*words, timeout=30)
            assert refused.exitcode == 13, (words, refused.error)
        assert (await bob.call("optimiserLogs")).exitcode == 0
    finally:
        await grid.close()
        stop(proc)
    assert "Traceback" not in log.read_text()
