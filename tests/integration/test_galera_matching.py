"""Two jcentrals as two hosts on a 3-node Galera cluster (issue 21, item 2): each central's
catalogue and task queue on its own node; jobs submitted through both; many JobAgents
asking both at once. Every job is matched exactly once (counted by the agents and in the
database), whichever central an agent asks: the claims are decided by the database, a job
submitted on one central reaches the other's broker by its refill."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from jalien.auth.tls import context_from_pem
from jalien.net.client import Client
from tests.galera import galera_cluster  # noqa: F401 - the fixture
from tests.integration.multicentral import Grid

# real processes and a real cluster, nothing twin-specific: run once, in the Cython pass
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]

MATCH_WORDS = ["site=CERN", "ce=ALICE::CERN::CE", "ttl=86400", "cores=8", "partitions=prod"]
JDL = 'Executable = "/bin/true"; Split = "production:1-{n}"; TTL = 600;'
PER_CENTRAL = 120  # jobs submitted through each central
AGENTS = 8  # agents asking each central at once


async def _agents_factory(grid: Grid):
    """A jobagent token (as a VoBox gets one), and a maker of agent clients for central i."""
    user = grid.user(0)
    await user.connect()
    reply = await user.call("token", "-t", "jobagent", "-hours", "1")
    await user.close()
    assert reply.exitcode == 0, reply.error
    record = reply.results[0]
    pems = record["tokencert"].encode(), record["tokenkey"].encode()
    ca_dir = grid.centrals[0].home / "certificates"

    def make(i: int) -> Client:
        context = context_from_pem("client", *pems, ca_dir)
        return Client("127.0.0.1", grid.centrals[i].binary, context, reconnect=False)

    return make


async def _run(grid: Grid, connect_queue) -> None:
    for i in (0, 1):  # half the jobs through each central
        user = grid.user(i)
        await user.connect()
        reply = await user.call("submit", "=<", JDL.format(n=PER_CENTRAL))
        await user.close()
        assert reply.exitcode == 0, reply.error
    total = 2 * PER_CENTRAL
    make = await _agents_factory(grid)
    matched: collections.Counter[int] = collections.Counter()
    by_central: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + 120

    async def agent(i: int) -> None:
        client = make(i)
        await client.connect()
        try:
            while sum(matched.values()) < total and time.monotonic() < deadline:
                reply = await client.call("getMatchJob", *MATCH_WORDS)
                assert reply.exitcode == 0, reply.error
                record = reply.results[0] if reply.results else {}
                if record.get("queueId"):
                    matched[int(record["queueId"])] += 1
                    by_central[i] += 1
                    assert record.get("tokenkey"), "a match carries its job token"
                else:  # nothing here now: the other central's jobs come with the refill
                    await asyncio.sleep(0.05)
        finally:
            await client.close()

    await asyncio.gather(*(agent(i % 2) for i in range(2 * AGENTS)))
    twice = {job: n for job, n in matched.items() if n > 1}
    assert not twice, f"matched more than once: {twice}\n{grid.logs()}"
    assert len(matched) == total, f"{len(matched)} of {total} matched\n{grid.logs()}"
    assert by_central[0] and by_central[1], by_central  # both centrals matched jobs
    # the database's count, read with causal reads on a third node
    conn = connect_queue()
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION wsrep_sync_wait = 1")
        cur.execute("SELECT state, COUNT(*) FROM QUEUE WHERE master <> 0 GROUP BY state")
        assert dict(cur.fetchall()) == {"ASSIGNED": total}
        cur.execute(
            "SELECT COUNT(*), COUNT(DISTINCT queueId) FROM QUEUETRACE WHERE state = 'ASSIGNED'"
        )
        assert cur.fetchone() == (total, total)  # one ASSIGNED trace line per job
        cur.execute("SELECT queueId FROM QUEUE WHERE master <> 0")
        assert {int(j) for (j,) in cur.fetchall()} == set(matched)
    finally:
        conn.close()


def test_two_centrals_on_galera_match_each_job_once(galera_cluster, tmp_path):  # noqa: F811
    cat = galera_cluster.database("jalien_gm_cat")
    tq = galera_cluster.database("jalien_gm_tq")
    grid = Grid(
        tmp_path,
        2,
        lambda i: (galera_cluster.dsn(i + 1, cat), galera_cluster.dsn(i + 1, tq)),
        se=None,
        env={"JALIEN_BROKER_REFILL": "0.2"},
    )
    for i in (0, 1):  # one catalogue host, reached through each central's own node
        config = tmp_path / f"jalien{i}.toml"
        text = config.read_text().replace(
            "\n[taskqueue_mariadb]", '\nnames = ["galera"]\n[taskqueue_mariadb]'
        )
        config.write_text(text)
    try:
        grid.start()
        asyncio.run(_run(grid, lambda: galera_cluster.connect(3, tq)))
    finally:
        grid.close()
