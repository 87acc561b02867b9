"""The broker: matching by resources and requirements, fair share, and cost that does not
grow with the queue."""

from __future__ import annotations

from jalien.jobs.broker import Agent, Broker
from jalien.jobs.store import JobRow


def job(i, user="jdoe", req="", packages="", ttl=3600, cores=1):
    return JobRow(
        i,
        0,
        user,
        "WAITING",
        "",
        req,
        packages,
        ttl,
        cores,
        0,
        1.0,
        "",
        "",
        "",
        0,
        0,
        0,
        0,
        0,
        "",
        0,
        0,
        "",
    )


def test_resources_and_requirements():
    b = Broker()
    b.add(job(1, ttl=100_000))
    b.add(job(2, cores=8))
    b.add(job(3, req='other.CE == "ALICE::FZK::CE"'))
    b.add(job(4, packages="VO_ALICE@O2::1"))
    small = Agent(ce="ALICE::CERN::CE", ttl=3600, cores=1, packages=frozenset())
    assert b.count(small) == 0
    assert b.match(small) is None
    big = Agent(ce="ALICE::FZK::CE", ttl=200_000, cores=8)
    assert b.count(big) == 4
    assert sorted(b.match(big) for _ in range(4)) == [1, 2, 3, 4]
    assert b.match(big) is None and len(b) == 0


def test_fair_share():
    b = Broker(shares={"alice": 1.0, "bob": 1.0})
    for i in range(10):
        b.add(job(i, user="alice"))
    for i in range(10, 13):
        b.add(job(i, user="bob"))
    agent = Agent(ttl=10_000)
    got = [b.match(agent) for _ in range(6)]
    owners = ["alice" if j < 10 else "bob" for j in got]
    assert owners.count("bob") == 3  # bob is not starved behind alice's ten
    b.finished("alice")
    assert b.running["alice"] == 2


def test_discard_and_user_restriction():
    b = Broker()
    b.add(job(1, user="alice"))
    b.add(job(2, user="bob"))
    b.discard(1)
    assert b.match(Agent(users=frozenset({"alice"}))) is None
    assert b.match(Agent(users=frozenset({"bob"}))) == 2


def test_a_job_added_twice_is_indexed_once():
    """A job's submission enters it, and the refill loop may have read it from the database
    in between (seen on Galera in CI: the same id twice in a queue, the second match a
    KeyError, exit 121). Adding a job already in the index changes nothing."""
    b = Broker()
    assert b.add(job(7)) is True
    assert b.add(job(7)) is False
    assert b.add(job(7, cores=2)) is False  # it stays where it was
    assert len(b) == 1 and b.count(Agent(cores=8)) == 1
    assert b.match(Agent(cores=8)) == 7
    assert b.match(Agent(cores=8)) is None
    assert len(b) == 0


def test_many_jobs_few_shapes():
    b = Broker()
    for i in range(100_000):
        b.add(job(i, user=f"u{i % 50}", ttl=3600 * (1 + i % 3)))
    assert len(b._buckets) == 3
    agent = Agent(ttl=4000)
    assert b.count(agent) == 33_334
    assert b.match(agent) is not None
