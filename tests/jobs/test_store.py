"""The task queue's contract (jalien.jobs.queue.TaskQueue), the same tests on SQLite and
on MariaDB: inserts and their ids, legal and illegal transitions, the trace, filters, and
racing transitions where exactly one wins, also between two processes' stores."""

from __future__ import annotations

import asyncio

import pytest

from jalien.jobs.queue import NewJob, NoSuchJob
from jalien.jobs.states import IllegalTransition, JobState
from jalien.wire.errors import RequestError

S = JobState


def new(user: str = "jdoe", **kw) -> NewJob:
    return NewJob(user=user, jdl=f'Executable = "x.sh"; # {user}', **kw)


async def test_insert_returns_ids_of_the_rows(taskqueue):
    ids = await taskqueue.insert([new(split_index=i, ttl=100 + i) for i in range(1234)])
    assert len(set(ids)) == 1234 and ids == sorted(ids)
    rows = {r.id: r for r in await taskqueue.query(ids=ids, limit=2000)}
    assert all(rows[job_id].split_index == i for i, job_id in enumerate(ids))
    assert all(rows[job_id].ttl == 100 + i for i, job_id in enumerate(ids))
    more = await taskqueue.insert([new("alice")])
    assert more[0] > ids[-1]
    assert await taskqueue.insert([]) == []
    job = await taskqueue.get(more[0])
    assert (job.user, job.state, job.jdl) == ("alice", "WAITING", 'Executable = "x.sh"; # alice')
    assert job.submitted > 0 and job.price == 1.0 and isinstance(job.price, float)
    assert await taskqueue.trace(more[0]) == [(job.submitted, "WAITING", "submitted")]


async def test_a_job_walks_to_done_and_its_trace_keeps_the_order(taskqueue):
    (job_id,) = await taskqueue.insert([new()])
    walk = [S.ASSIGNED, S.STARTED, S.RUNNING, S.SAVING, S.SAVED, S.DONE]
    previous = S.WAITING
    for state in walk:
        old, row = await taskqueue.transition(
            job_id, state, fields={"node": f"wn-{state.value}"}, message=f"to {state.value}"
        )
        assert old is previous and row.state == state.value
        assert row == await taskqueue.get(job_id)  # the returned row is the stored row
        previous = state
    trace = await taskqueue.trace(job_id)
    assert [t[1] for t in trace] == ["WAITING", *(s.value for s in walk)]
    assert [t[2] for t in trace][1:] == [f"to {s.value}" for s in walk]
    assert [t[0] for t in trace] == sorted(t[0] for t in trace)
    assert (await taskqueue.get(job_id)).node == "wn-DONE"


async def test_illegal_and_unexpected_moves_change_nothing(taskqueue):
    (job_id,) = await taskqueue.insert([new()])
    with pytest.raises(IllegalTransition, match="WAITING -> RUNNING is not allowed"):
        await taskqueue.transition(job_id, S.RUNNING, fields={"node": "x"})
    await taskqueue.transition(job_id, S.ASSIGNED)
    with pytest.raises(RequestError, match="is ASSIGNED, not WAITING") as err:
        await taskqueue.transition(job_id, S.ASSIGNED, expect=frozenset({S.WAITING}))
    assert err.value.exitcode == 22
    row = await taskqueue.get(job_id)
    assert (row.state, row.node) == ("ASSIGNED", "")
    assert [t[1] for t in await taskqueue.trace(job_id)] == ["WAITING", "ASSIGNED"]
    await taskqueue.transition(job_id, S.KILLED)  # from any state that has not ended
    with pytest.raises(IllegalTransition):
        await taskqueue.transition(job_id, S.KILLED)
    _, row = await taskqueue.transition(job_id, S.WAITING, force=True, fields={"resubmits": 1})
    assert (row.state, row.resubmits) == ("WAITING", 1)


async def test_missing_jobs_and_bad_fields(taskqueue):
    with pytest.raises(NoSuchJob):
        await taskqueue.get(424242)
    with pytest.raises(NoSuchJob):
        await taskqueue.transition(424242, S.ASSIGNED)
    (job_id,) = await taskqueue.insert([new()])
    with pytest.raises(ValueError, match="cannot update"):
        await taskqueue.transition(job_id, S.ASSIGNED, fields={"user": "mallory"})
    with pytest.raises(ValueError, match="cannot update"):
        await taskqueue.touch(job_id, {"state": "DONE"})
    await taskqueue.touch(job_id, {"heartbeat": 1234, "node": "wn7"})
    row = await taskqueue.get(job_id)
    assert (row.heartbeat, row.node, row.state, row.user) == (1234, "wn7", "WAITING", "jdoe")


async def test_query_filters_waiting_active_and_summary(taskqueue):
    a = await taskqueue.insert([new("jdoe"), new("jdoe"), new("alice"), new("Jdoe")])
    (master,) = await taskqueue.insert([new("jdoe", state=S.SPLITTING)])
    subs = await taskqueue.insert([new("jdoe", master=master, split_index=i) for i in (1, 2)])
    await taskqueue.transition(master, S.SPLIT)
    await taskqueue.transition(a[0], S.ASSIGNED, fields={"site": "CERN"})
    await taskqueue.transition(a[2], S.ASSIGNED, fields={"site": "FZK"})
    await taskqueue.transition(a[2], S.STARTED)

    def ids(rows):
        return [r.id for r in rows]

    everything = await taskqueue.query()
    assert ids(everything) == sorted([*a, master, *subs], reverse=True)  # newest first
    assert ids(await taskqueue.query(user="jdoe")) == sorted([a[0], a[1], master, *subs])[::-1]
    assert ids(await taskqueue.query(user="Jdoe")) == [a[3]]  # names are case-sensitive
    waiting = frozenset({S.WAITING})
    assert ids(await taskqueue.query(user="jdoe", states=waiting)) == [subs[1], subs[0], a[1]]
    both = frozenset({S.ASSIGNED, S.STARTED})
    assert ids(await taskqueue.query(states=both)) == [a[2], a[0]]
    assert ids(await taskqueue.query(site="CERN")) == [a[0]]
    assert ids(await taskqueue.query(master=master)) == [subs[1], subs[0]]
    assert ids(await taskqueue.query(ids=[a[1], a[3], 999_999])) == [a[3], a[1]]
    assert ids(await taskqueue.query(limit=2)) == ids(everything)[:2]
    assert ids(await taskqueue.query(user="nobody")) == []
    assert ids(await taskqueue.waiting()) == [a[1], a[3], *subs]  # oldest first
    assert await taskqueue.active_by_user() == {"jdoe": 1, "alice": 1}
    assert await taskqueue.summary() == {"WAITING": 4, "ASSIGNED": 1, "STARTED": 1, "SPLIT": 1}


async def test_racing_transitions_one_wins(taskqueue):
    jobs = await taskqueue.insert([new() for _ in range(10)])
    waiting = frozenset({S.WAITING})

    async def assign(job_id: int, agent: int):
        return await taskqueue.transition(
            job_id, S.ASSIGNED, expect=waiting, fields={"node": f"wn{agent}"}
        )

    results = await asyncio.gather(
        *(assign(j, agent) for j in jobs for agent in range(8)), return_exceptions=True
    )
    for k, job_id in enumerate(jobs):
        mine = results[k * 8 : (k + 1) * 8]
        winners = [r for r in mine if not isinstance(r, BaseException)]
        assert len(winners) == 1, mine
        assert all("is ASSIGNED, not WAITING" in str(r) for r in mine if r is not winners[0])
        assert (await taskqueue.get(job_id)).node == winners[0][1].node
        assert [t[1] for t in await taskqueue.trace(job_id)] == ["WAITING", "ASSIGNED"]


async def test_a_failing_move_does_not_undo_the_others_committed_with_it(taskqueue):
    jobs = await taskqueue.insert([new() for _ in range(20)])
    moves = [taskqueue.transition(j, S.ASSIGNED if i % 2 else S.DONE) for i, j in enumerate(jobs)]
    results = await asyncio.gather(*moves, return_exceptions=True)
    assert [isinstance(r, IllegalTransition) for r in results] == [i % 2 == 0 for i in range(20)]
    summary = await taskqueue.summary()
    assert summary == {"WAITING": 10, "ASSIGNED": 10}


async def test_two_stores_on_one_database_one_wins(make_queue, queue_kind):
    """Two jcentral processes sharing a task queue: each job is assigned once, by one."""
    first, second = make_queue(queue_kind), make_queue(queue_kind)
    await first.start()
    await second.start()
    try:
        jobs = await first.insert([new() for _ in range(50)])
        jobs += await second.insert([new() for _ in range(50)])
        assert len(set(jobs)) == 100
        waiting = frozenset({S.WAITING})

        async def grab(store, name):
            won = []
            for job_id in jobs:
                try:
                    await store.transition(
                        job_id, S.ASSIGNED, expect=waiting, fields={"node": name}
                    )
                    won.append(job_id)
                except RequestError:
                    pass
            return won

        a, b = await asyncio.gather(grab(first, "a"), grab(second, "b"))
        assert sorted(a + b) == sorted(jobs)  # every job once, by exactly one store
        for job_id in jobs:
            row = await second.get(job_id)
            assert row.node == ("a" if job_id in a else "b")
            assert [t[1] for t in await first.trace(job_id)] == ["WAITING", "ASSIGNED"]
    finally:
        await first.close()
        await second.close()


async def test_mariadb_connections_killed_server_side_cost_no_request(make_queue):
    from jalien.sqlstore.mysql import connect

    taskqueue = make_queue("mariadb")
    await taskqueue.start()
    try:
        await _kill_connections_then_work(taskqueue, connect)
    finally:
        await taskqueue.close()


async def _kill_connections_then_work(taskqueue, connect):
    jobs = await taskqueue.insert([new() for _ in range(3)])
    await taskqueue.get(jobs[0])  # a reader connection exists
    dsn = taskqueue._db.dsn
    admin = connect(dsn)
    cur = admin.cursor()
    cur.execute(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB=%s AND ID <> CONNECTION_ID()",
        (dsn.database,),
    )
    victims = [row[0] for row in cur.fetchall()]
    assert victims
    for victim in victims:
        cur.execute(f"KILL CONNECTION {victim}")
    admin.close()
    _, row = await taskqueue.transition(jobs[0], S.ASSIGNED)  # the writer reconnects
    assert row.state == "ASSIGNED"
    assert (await taskqueue.get(jobs[0])).state == "ASSIGNED"  # a reader reconnects
    assert await taskqueue.summary() == {"WAITING": 2, "ASSIGNED": 1}
