"""Jobs through a jcentral process: a job token acts for its own job only, and only while
the job lives; a kill -9 loses no acknowledged submission."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.catalogue.mariadb_servers import mariadb_dsn, mariadb_system  # noqa: F401
from tests.integration.conftest import free_port, run_setup, start_central, stop

pytestmark = pytest.mark.integration
JDL = 'Executable = "/bin/true"; TTL = 600;'


def user_client(central) -> Client:
    context = client_context(
        central.globus / "usercert.pem", central.globus / "userkey.pem", central.ca_dir
    )
    return Client("127.0.0.1", central.binary_port, context, reconnect=False)


def test_job_token_scope(central, tmp_path):
    async def go():
        user = user_client(central)
        await user.connect()
        first = int((await user.call("submit", "=<", JDL)).results[0]["jobId"])
        second = int((await user.call("submit", "=<", JDL)).results[0]["jobId"])
        got = await user.call("getMatchJob", "ttl=3600", "ce=ALICE::TEST::CE")
        job = got.results[0]
        assert job["queueId"] == str(first)
        cert, key = tmp_path / "job.pem", tmp_path / "job.key"
        cert.write_text(job["tokencert"])
        key.write_text(job["tokenkey"])
        os.chmod(key, 0o600)
        token = Client(
            "127.0.0.1",
            central.binary_port,
            client_context(cert, key, central.ca_dir),
            reconnect=False,
        )
        await token.connect()
        assert (await token.call("whoami")).results[0]["message"] == "jdoe"
        assert (await token.call("setJobStatus", str(first), "STARTED")).exitcode == 0
        other = await token.call("setJobStatus", str(second), "ASSIGNED")
        assert other.exitcode == 13 and "belongs to job" in other.error
        assert (await token.call("getMatchJob", "ttl=3600")).exitcode == 13
        assert (await token.call("setJobStatus", str(first), "RUNNING")).exitcode == 0
        assert (await token.call("setJobStatus", str(first), "DONE")).exitcode == 0
        late = await token.call("jobHeartbeat", str(first))
        assert late.exitcode == 13 and "revoked" in late.error
        await token.close()
        await user.close()

    asyncio.run(go())


@pytest.mark.parametrize("queue_kind", ["sqlite", "mariadb"])
def test_kill9_keeps_acknowledged_submissions(tmp_path, request, queue_kind):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    env = {}
    if queue_kind == "mariadb":
        config = tmp_path / "jalien.toml"
        dsn = request.getfixturevalue("mariadb_dsn")
        config.write_text(f'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\ndsn = "{dsn}"\n')
        env["JALIEN_CONFIG"] = str(config)
    ws, binary = free_port(), free_port()
    proc = start_central(home, tmp_path / "log", ws, binary, env=env)
    context = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    acknowledged: list[int] = []

    async def flood():
        client = Client("127.0.0.1", binary, context, reconnect=False)
        await client.connect()

        async def one():
            reply = await client.call("submit", "=<", JDL)
            if reply.exitcode == 0:
                acknowledged.append(int(reply.results[0]["jobId"]))

        tasks = [asyncio.ensure_future(one()) for _ in range(2000)]
        while len(acknowledged) < 30:
            await asyncio.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    asyncio.run(flood())
    proc.wait(10)
    proc = start_central(home, tmp_path / "log2", ws, binary, env=env)
    try:

        async def listed():
            client = Client("127.0.0.1", binary, context, reconnect=False)
            await client.connect()
            reply = await client.call("ps", "-l", "100000")
            await client.close()
            return {int(r["id"]) for r in reply.results}

        assert set(acknowledged) <= asyncio.run(listed())
        if queue_kind == "mariadb":  # and they are in MariaDB, not in a SQLite file
            from jalien.sqlstore.mysql import connect, parse_dsn

            conn = connect(parse_dsn(dsn))
            cur = conn.cursor()
            cur.execute("SELECT queueId FROM QUEUE")
            assert set(acknowledged) <= {row[0] for row in cur.fetchall()}
            conn.close()
            assert not (home / "taskqueue.db").exists()
    finally:
        stop(proc)
