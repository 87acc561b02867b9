"""Matching claims in the task queue (TaskQueue.claim) and the broker as a cache of it
(jobs.broker_feed): on SQLite and MariaDB, and across the nodes of a Galera cluster."""

from __future__ import annotations

import asyncio
import random

import pytest

from jalien.jobs.broker import Agent, Broker
from jalien.jobs.broker_feed import BrokerFeed
from jalien.jobs.queue import Claim, NewJob
from jalien.jobs.service import JobService
from jalien.jobs.states import JobState as S
from tests.galera import galera_cluster  # noqa: F401


def new(user: str = "jdoe") -> NewJob:
    return NewJob(user=user, jdl='Executable = "/bin/true";')


def claim(job_id: int, node: str = "n1") -> Claim:
    return Claim(job_id=job_id, site="CERN", ce="CE1", node=node, heartbeat=7, message="m")


async def test_a_claim_assigns_a_waiting_job_once(taskqueue):
    a, b, c = await taskqueue.insert([new(), new(), new()])
    await taskqueue.transition(c, S.KILLED)
    rows = await taskqueue.claim([claim(a), claim(b, "n2"), claim(a, "n3"), claim(c)])
    assert [r and (r.id, r.state, r.node) for r in rows] == [
        (a, "ASSIGNED", "n1"),
        (b, "ASSIGNED", "n2"),
        None,  # the same job twice in a batch: the first claim wins
        None,  # killed: not WAITING
    ]
    assert rows[0].jdl == 'Executable = "/bin/true";'  # the claim hands the JDL out
    again = await taskqueue.claim([claim(a)])
    assert again == [None]
    row = await taskqueue.get(b)
    assert (row.state, row.site, row.ce, row.node, row.heartbeat) == (
        "ASSIGNED",
        "CERN",
        "CE1",
        "n2",
        7,
    )
    assert [t[1:] for t in await taskqueue.trace(b)] == [
        ("WAITING", "submitted"),
        ("ASSIGNED", "m"),
    ]


async def test_concurrent_claims_are_batched_and_each_job_goes_once(taskqueue):
    jobs = await taskqueue.insert([new() for _ in range(60)])
    picks = [random.choice(jobs) for _ in range(200)]  # many agents, overlapping choices
    results = await asyncio.gather(
        *(taskqueue.claim([claim(j, f"n{i}")]) for i, j in enumerate(picks))
    )
    won = [j for j, (row,) in zip(picks, results, strict=True) if row is not None]
    assert sorted(won) == sorted(set(picks))  # every picked job exactly once
    assert (await taskqueue.summary()).get("ASSIGNED") == len(set(picks))


async def test_two_stores_claiming_the_same_jobs_one_wins_each(make_queue, queue_kind):
    """Two jcentral processes on one task queue, their agents claiming at once."""
    first, second = make_queue(queue_kind), make_queue(queue_kind)
    await first.start()
    await second.start()
    try:
        jobs = await first.insert([new() for _ in range(100)])
        won = await _race(first, second, jobs)
        assert sorted(won) == sorted(jobs)
    finally:
        await first.close()
        await second.close()


async def _race(first, second, jobs: list[int], agents: int = 20) -> list[int]:
    """*agents* agents on each store claiming the jobs in random orders; the ids won."""
    won: list[int] = []

    async def agent(store, name):
        order = random.sample(jobs, len(jobs))
        for i in range(0, len(order), 5):
            rows = await store.claim([claim(j, name) for j in order[i : i + 5]])
            won.extend(r.id for r in rows if r is not None)

    await asyncio.gather(
        *(agent(first, f"a{i}") for i in range(agents)),
        *(agent(second, f"b{i}") for i in range(agents)),
    )
    return won


async def test_the_broker_feed_follows_what_another_process_queued(make_queue, queue_kind):
    mine, other = make_queue(queue_kind), make_queue(queue_kind)
    await mine.start()
    await other.start()
    try:
        jobs = JobService(mine, Broker())
        await jobs.start()
        feed = BrokerFeed(mine, jobs.broker, high=0, straggle=0.0)
        theirs = await other.insert([new() for _ in range(5)])
        assert len(jobs.broker) == 0
        assert await feed.refill() == 5
        assert await feed.refill() == 0  # already there
        agent = Agent(site="CERN", ce="CE1")
        # another process claims two of them: matching here skips them (the database decides)
        assert [r is not None for r in await other.claim([claim(theirs[0]), claim(theirs[1])])]
        matched = await jobs.match(_agent_caller(), agent, None)
        assert matched is not None and matched.queue_id == theirs[2]
        assert jobs.broker.running["jdoe"] == 1  # the lost claims gave their counts back
        # requeued elsewhere and claimed elsewhere: the resync adds and drops
        await other.transition(theirs[0], S.WAITING, force=True)
        await other.claim([claim(theirs[3])])
        added, dropped = await feed.resync()
        assert (added, dropped) == (1, 1)
        assert jobs.broker.ids() == {theirs[0], theirs[4]}
        assert jobs.broker.running["jdoe"] == 3  # the database's count
    finally:
        await mine.close()
        await other.close()


async def test_a_stale_broker_falls_back_in_one_claim(make_queue, queue_kind):
    """Another central's broker offered (and claimed) the oldest jobs first: the next match
    here takes the first job still waiting in one claim, and its broker forgets the others."""
    mine, other = make_queue(queue_kind), make_queue(queue_kind)
    await mine.start()
    await other.start()
    try:
        ids = await other.insert([new() for _ in range(10)])
        jobs = JobService(mine, Broker())
        await jobs.start()
        assert len(jobs.broker) == 10
        await other.claim([claim(j) for j in ids[:5]])
        calls = []
        real = mine.claim

        async def counted(claims):
            calls.append([c.job_id for c in claims])
            return await real(claims)

        mine.claim = counted
        matched = await jobs.match(_agent_caller(), Agent(site="CERN", ce="CE1"), None)
        assert matched is not None and matched.queue_id == ids[5]
        assert len(calls) == 1  # one claim with its fallbacks, not five failed ones
        assert jobs.broker.ids() == set(ids[6:])
        assert jobs.broker.running["jdoe"] == 1
        row = await other.get(ids[5])
        assert (row.state, row.site) == ("ASSIGNED", "CERN")
    finally:
        await mine.close()
        await other.close()


async def test_a_restarted_service_refills_its_broker_from_the_database(taskqueue):
    jobs = JobService(taskqueue, Broker())
    await jobs.start()
    ids = await jobs.submit(_user_caller(), 'Executable = "/bin/true";', [])
    ids += await jobs.submit(_user_caller(), 'Executable = "/bin/true";', [])
    await jobs.match(_agent_caller(), Agent(site="CERN", ce="CE1"), None)
    again = JobService(taskqueue, Broker())  # a restart: nothing in memory
    await again.start()
    assert again.broker.ids() == {ids[1]}
    assert again.broker.running["jdoe"] == 1


class _Caller:
    def __init__(self, login: str, kind: str) -> None:
        from jalien.auth.policy import IdentityKind

        self.login = login
        self.roles = ()
        self.serial = 0
        self.kind = IdentityKind(kind)


def _agent_caller() -> _Caller:
    return _Caller("jalien", "jobagent")


def _user_caller() -> _Caller:
    return _Caller("jdoe", "user")


@pytest.mark.cython_only
async def test_claims_on_two_galera_nodes_each_job_once(galera_cluster):  # noqa: F811
    """Two jcentrals' task queues on different Galera nodes claiming the same jobs at
    once: certification conflicts (1213 at COMMIT) are retried, every job is won once."""
    from jalien.jobs.mariadb_store import MariaDBTaskQueue

    database = galera_cluster.database("jalien_claims")
    first = MariaDBTaskQueue(galera_cluster.dsn(1, database))
    second = MariaDBTaskQueue(galera_cluster.dsn(2, database))
    await first.start()
    await second.start()
    try:
        jobs = await first.insert([new() for _ in range(150)])
        jobs += await second.insert([new() for _ in range(150)])
        assert len(set(jobs)) == 300
        won = await _race(first, second, jobs, agents=10)
        assert sorted(won) == sorted(jobs)  # each job exactly once, counted
        for node in (1, 2, 3):  # causal reads: what every node says once it applied all
            conn = galera_cluster.connect(node, database)
            try:
                cur = conn.cursor()
                cur.execute("SET SESSION wsrep_sync_wait = 1")
                cur.execute("SELECT state, COUNT(*) FROM QUEUE GROUP BY state")
                assert dict(cur.fetchall()) == {"ASSIGNED": 300}
                cur.execute("SELECT COUNT(*) FROM QUEUETRACE WHERE state = 'ASSIGNED'")
                assert cur.fetchone()[0] == 300  # one trace line per job: no double claim
            finally:
                conn.close()
    finally:
        await first.close()
        await second.close()


async def test_fallbacks_are_taken_in_order_first_choices_first(taskqueue):
    a, b, c, d = await taskqueue.insert([new() for _ in range(4)])
    await taskqueue.transition(a, S.KILLED)
    rows = await taskqueue.claim(
        [
            Claim(job_id=a, fallbacks=(b, c), node="x"),  # a is gone: b is y's first choice
            Claim(job_id=b, node="y"),
            Claim(job_id=a, fallbacks=(c, d), node="z"),
        ]
    )
    got = [(r.id, r.node) if r is not None else None for r in rows]
    if got[1] == (b, "y"):  # one batch (MariaDB): first choices first, then fallbacks in order
        assert got == [(c, "x"), (b, "y"), (d, "z")]
    assert sorted(r.id for r in rows if r is not None) == [b, c, d]


async def test_the_refill_finds_a_job_committed_after_a_higher_id(taskqueue):
    """Ids are not committed in order (Galera nodes interleave them, a large submission
    commits after a small one): the refill's mark trails the highest id seen."""
    broker = Broker()
    feed = BrokerFeed(taskqueue, broker, high=0, straggle=60.0)
    first = await taskqueue.insert([new() for _ in range(3)])
    assert await feed.refill() == 3 and feed.high == first[-1]
    feed.high = first[-1] + 100  # a higher id was seen (committed elsewhere, claimed since)
    assert await feed.refill() == 0
    (late,) = await taskqueue.insert([new()])  # committed now, below the highest id seen
    assert late < feed.high
    assert await feed.refill() == 1  # the mark is still the one of a minute ago
    assert late in broker
    without = BrokerFeed(taskqueue, Broker(), high=feed.high, straggle=0.0)
    assert await without.refill() == 0  # a mark at the highest id would miss it


async def test_a_miss_refills_at_once_what_another_worker_queued(taskqueue):
    """jcentral's workers: a job queued through another process is matched at the first
    ask here, not after the next refill (one page above the highest id, rate-limited)."""
    jobs = JobService(taskqueue, Broker())
    await jobs.start()
    feed = BrokerFeed(taskqueue, jobs.broker, high=0, straggle=60.0)
    jobs.refill = feed.refill_new
    agent = Agent(site="CERN", ce="CE1")
    assert await jobs.match(_agent_caller(), agent, None) is None  # nothing at all
    (theirs,) = await taskqueue.insert([new()])  # as another worker's submit
    feed._missed_at -= 1.0  # past the rate limit
    matched = await jobs.match(_agent_caller(), agent, None)
    assert matched is not None and matched.queue_id == theirs
    assert await jobs.match(_agent_caller(), agent, None) is None  # rate-limited: no query


def test_a_contended_broker_spreads_its_matches_over_the_oldest_jobs():
    from jalien.jobs.queue import JobRow

    def row(job_id: int) -> JobRow:
        return JobRow(job_id, 0, "jdoe", "WAITING", "", "", "", 3600, 1, 0, 1.0,
                      "", "", "", 0, 0, 0, 0, 0, "", 0, 0, "")  # fmt: skip

    broker = Broker()
    broker.add_many(row(i) for i in range(1, 201))
    agent = Agent(site="CERN", ce="CE1")
    assert [broker.match_job(agent, 2)[0] for _ in range(3)] == [1, 2, 3]  # alone: in order
    broker.contended()
    broker._random = random.Random(7)
    picked = []
    for _ in range(20):
        job_id, _user, fallbacks = broker.match_job(agent, 2)
        picked.append(job_id)
        assert job_id not in fallbacks and all(f in broker for f in fallbacks)
    assert sorted(picked) != list(range(4, 24))  # not simply the oldest ones
    assert max(picked) <= 3 + 20 + broker.spread  # but among the oldest
    assert len(set(picked)) == 20 and not any(j in broker for j in picked)
    assert broker.running["jdoe"] == 23
