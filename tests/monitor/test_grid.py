"""monitor.grid: the latest report per CE and agent, bounded; silent agents dropped; a
user sees only the agents of their jobs; minutes in a store, merged over processes."""

from __future__ import annotations

import pytest

from jalien.monitor.grid import GridView, Minute, _sum
from jalien.wire import monitor_api
from jalien.wire.monitor_api import AgentReport, MonitorApiError, SiteReport, SpyReport, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes, ttl: float) -> None:
        self.data[key] = value

    def scan(self) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())


def test_reports_make_the_picture_and_minutes():
    clock = Clock()
    grid = GridView(MemoryStore(), agent_ttl=60, clock=clock)
    grid.site("vobox", SiteReport(site="S", ce="S::CE", max_running=10, running=4, waiting=3))
    grid.site("vobox", SiteReport(site="S", ce="S::CE", max_running=10, running=5, waiting=2,
                                  errors=["boom"]))  # fmt: skip
    grid.agent("1:wn1", AgentReport(site="S", ce="S::CE", node="wn1", queue_id=7,
                                    usage=Usage(cpu=3.0, rss=100)), user="alice")  # fmt: skip
    grid.agent("2:wn2", AgentReport(site="S", ce="S::CE", node="wn2"))
    minute = grid.minute({"jobs.RUNNING": 1.0})
    assert (minute.ces, minute.slots, minute.running_agents, minute.waiting_jobs) == (1, 10, 5, 2)
    assert (minute.agents, minute.busy_agents, minute.cpu, minute.rss) == (2, 1, 3.0, 100)
    assert minute.errors == 1 and minute.counters == {"jobs.RUNNING": 1.0}
    assert grid.minute().errors == 0  # counted once
    grid.record(minute)
    assert [m.time for m in grid.history()] == [minute.time]
    mine = grid.snapshot("alice")
    assert [a.report.node for a in mine.agents] == ["wn1"] and mine.errors == []
    assert len(grid.snapshot().errors) == 1
    clock.now += 61
    grid.agent("2:wn2", AgentReport(site="S", ce="S::CE", node="wn2"))
    assert grid.forget_silent() == 1 and list(grid.agents) == ["2:wn2"]


def test_bounds():
    grid = GridView(max_agents=3, max_sites=2)
    for i in range(10):
        grid.agent(f"k{i}", AgentReport(node=f"n{i}"))
    assert list(grid.agents) == ["k7", "k8", "k9"]
    grid.site("v", SiteReport(ce="a"))
    grid.site("v", SiteReport(ce="b"))
    grid.site("v", SiteReport(ce="b"))  # an update is no new CE
    with pytest.raises(ValueError):
        grid.site("v", SiteReport(ce="c"))
    for i in range(500):
        grid.agent("k", AgentReport(errors=[f"e{i}"]))
    assert len(grid.errors) == 200


def test_minutes_of_two_processes_are_merged():
    store = MemoryStore()
    one, two = GridView(store), GridView(store)
    two._key = b"other"
    one.record(Minute(time=60, agents=2, counters={"jobs.DONE": 5.0, "requests": 3.0}))
    two.record(Minute(time=60, agents=3, counters={"jobs.DONE": 5.0, "requests": 4.0}))
    one.record(Minute(time=120, agents=1))
    merged = one.history()
    assert [m.time for m in merged] == [60, 120]
    assert merged[0].agents == 5 and merged[0].counters["requests"] == 7.0
    assert one.history(since=100)[0].time == 120
    assert _sum(Minute(time=1), Minute(time=1, cpu=1.0)).cpu == 1.0


def test_messages_round_trip_and_bad_bytes():
    for message in (
        SpyReport(ref=1, queue_id=2, what="stdout", text="x"),
        AgentReport(node="n", usage=Usage(cpu=1.0)),
        SiteReport(ce="c", errors=["e"]),
    ):
        assert monitor_api.decode(monitor_api.encode(message), type(message)) == message
    with pytest.raises(MonitorApiError):
        monitor_api.decode(b"\xc1", SpyReport)
    with pytest.raises(MonitorApiError):
        monitor_api.decode(monitor_api.encode(SiteReport()), SpyReport)


def test_workers_of_a_host_show_one_picture():
    """jcentral's workers: each receives the reports of the sites and agents connected to
    it; with a shared store each one's snapshot shows them all, the latest report winning,
    silent agents left out, errors from every worker."""
    clock = Clock()
    live = MemoryStore()
    first = GridView(shared=live, agent_ttl=60, clock=clock)
    second = GridView(shared=live, agent_ttl=60, clock=clock)
    first.site("vobox", SiteReport(site="S", ce="S::CE", max_running=10, running=1))
    second.site("vobox2", SiteReport(site="T", ce="T::CE", max_running=5, errors=["down"]))
    first.agent("1:wn1", AgentReport(site="S", ce="S::CE", node="wn1", queue_id=7), user="al")
    clock.now += 10
    second.agent("2:wn2", AgentReport(site="T", ce="T::CE", node="wn2"))
    second.site("vobox", SiteReport(site="S", ce="S::CE", max_running=10, running=2))
    for view in (first, second):
        snap = view.snapshot()
        assert [(s.report.ce, s.report.running) for s in snap.sites] == [
            ("S::CE", 2),
            ("T::CE", 0),
        ]
        assert [a.report.node for a in snap.agents] == ["wn1", "wn2"]
        assert [e.text for e in snap.errors] == ["down"]
        assert [a.report.node for a in view.snapshot("al").agents] == ["wn1"]
    clock.now += 55  # wn1 silent for 65 s
    assert [a.report.node for a in second.snapshot().agents] == ["wn2"]
    assert first.minute().ces == 1  # the minutes stay per process (summed by history)
