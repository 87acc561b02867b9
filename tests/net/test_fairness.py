"""Fairness between identities (jalien.net.fairness): the logic without sockets, then a
server under a flood from one user, on both personalities."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json

from websockets.asyncio.client import connect as ws_connect

from jalien.auth.policy import Action
from jalien.net import fairness
from jalien.net.fairness import (
    SLICE,
    InFlight,
    LoopBudget,
    RoundRobin,
    TurnGate,
    serving,
    step_rows,
)
from jalien.net.limits import Limits
from jalien.wire.errors import EXIT_BUSY


def test_round_robin_takes_keys_in_turn():
    ring: RoundRobin[str] = RoundRobin()
    for i in range(4):
        ring.push("a", f"a{i}")
    ring.push("b", "b0")
    ring.push("c", "c0")
    got = []
    while (item := ring.pop()) is not None:
        got.append(item[1])
    assert got == ["a0", "b0", "c0", "a1", "a2", "a3"]
    assert not ring and len(ring) == 0


def test_round_robin_remove():
    ring: RoundRobin[int] = RoundRobin()
    ring.push("a", 1)
    assert ring.remove("a", 1) and not ring
    assert not ring.remove("a", 1) and not ring.remove("x", 1)


def test_in_flight_bounds_and_resume():
    resumed = []
    bound = InFlight(soft=4, hard=6, on_resume=resumed.append)
    assert all(bound.admit("a") for _ in range(6))
    assert not bound.admit("a")  # past hard: busy
    assert bound.admit("b")  # another identity is not affected
    assert bound.saturated("a") and not bound.saturated("b")
    for _ in range(3):
        bound.done("a")
    assert not bound.saturated("a") and resumed == []
    bound.done("a")  # down to soft // 2
    assert resumed == ["a"]
    bound.done("a")
    bound.done("a")
    assert "a" not in bound.counts


def test_a_light_identity_and_others_active(monkeypatch):
    """An identity with few requests in flight is light (its pages take no turn); another
    identity that asked within RECENT seconds makes the served one's pages short."""
    now = [100.0]
    monkeypatch.setattr(fairness.time, "monotonic", lambda: now[0])
    bound = InFlight(soft=256, hard=1024)
    for _ in range(fairness.LIGHT):
        bound.admit("a")
    assert bound.light("a") and bound.light("b")
    bound.admit("a")
    assert not bound.light("a")
    assert not bound.others_active("a")  # alone, however many requests
    bound.admit("b")
    assert bound.others_active("a") and bound.others_active("b")
    now[0] += fairness.RECENT + 0.1
    bound.admit("a")  # b has not asked since
    assert not bound.others_active("a")


def test_step_rows_short_while_another_identity_is_active():
    bound = InFlight(soft=256, hard=1024)
    bound.admit("flood")

    def rows() -> int:
        serving(bound, "flood")
        return step_rows(5000)

    assert step_rows(5000) == 5000  # outside a server's stream
    assert contextvars.copy_context().run(rows) == 5000  # alone: big pages
    bound.admit("other")
    assert contextvars.copy_context().run(rows) == SLICE
    assert step_rows(5000) == 5000  # the context of the stream is its own


async def test_turn_gate_serves_identities_in_turn():
    gate = TurnGate(1)
    order: list[str] = []

    async def work(key: str, tag: str):
        await gate.enter(key)
        try:
            order.append(tag)
            await asyncio.sleep(0)
        finally:
            gate.leave()

    assert gate.try_enter()  # a turn held: everyone else waits
    tasks = [asyncio.ensure_future(work("a", f"a{i}")) for i in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(work("b", "b0")))
    await asyncio.sleep(0)
    gate.leave()
    await asyncio.gather(*tasks)
    assert order.index("b0") <= 1  # not behind a's queue
    await asyncio.sleep(0)
    assert gate.try_enter()  # every turn given back
    gate.leave()


async def test_turn_gate_cancel_and_patience():
    gate = TurnGate(1, patience=0.05)
    assert gate.try_enter()
    waiter = asyncio.ensure_future(gate.enter("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.waiting == 0
    await asyncio.wait_for(gate.enter("b"), 2)  # the holder never leaves: b takes one anyway
    gate.leave()
    gate.leave()
    assert not gate.try_enter()  # freed once the ready tasks have run
    await asyncio.sleep(0)
    assert gate.try_enter() and not gate.try_enter()
    gate.leave()


async def test_turn_ended_in_a_step_is_free_after_the_ready_tasks():
    """Pages made without a yield: the flooder's tasks already queued on the loop wait at
    the gate, so another identity's task queued after them is next, not last."""
    gate = TurnGate(1)
    order: list[str] = []

    async def page(key: str) -> None:
        if not gate.try_enter():
            await gate.enter(key)
        order.append(key)  # the whole page in this step
        gate.leave()

    tasks = [asyncio.ensure_future(page("a")) for _ in range(20)]
    tasks.append(asyncio.ensure_future(page("b")))
    await asyncio.gather(*tasks)
    assert order.index("b") <= 2, order


async def test_one_turn_handed_on_per_turn_of_the_loop():
    """Two slots, both ended in one step while four wait: the waiters get their turns one
    loop turn after another (a page that does not yield runs alone in its loop turn,
    another identity's request is read between two such pages), never more than the
    slots at once."""
    gate = TurnGate(2)
    got: list[int] = []
    holding: list[int] = []

    async def waiter(i: int) -> None:
        await gate.enter(f"k{i}")
        got.append(i)
        holding.append(i)

    assert gate.try_enter() and gate.try_enter()
    tasks = [asyncio.ensure_future(waiter(i)) for i in range(4)]
    await asyncio.sleep(0)
    gate.leave()
    gate.leave()
    seen = []
    for _ in range(6):
        await asyncio.sleep(0)
        seen.append(len(got))
        while holding:  # each page ends in its step
            holding.pop()
            gate.leave()
    await asyncio.gather(*tasks)
    assert got == [0, 1, 2, 3]
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert max(steps) == 1, seen  # one new turn per turn of the loop
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()  # all given back
    gate.leave()
    gate.leave()


async def test_a_turn_of_the_loop_makes_pages_for_its_budget_only():
    """Streams making pages without a yield (SQLite on the loop's thread) make them for
    BUDGET per turn of the loop, then wait for the next turn, in which the loop reads what
    arrived: a user's first request during a flood by someone alone is read within
    milliseconds, not after every page ready (seen: 2.6-8 s). A fake clock: 2 ms a page."""
    now = [0.0]
    budget = LoopBudget(0.005, clock=lambda: now[0])
    loop = asyncio.get_running_loop()
    turn = [0]
    ticking = [True]

    def tick() -> None:  # runs once per turn of the loop
        turn[0] += 1
        if ticking[0]:
            loop.call_soon(tick)

    loop.call_soon(tick)
    pages_in_turn: collections.Counter[int] = collections.Counter()

    async def stream() -> None:
        for _ in range(20):
            if budget.spent():
                await budget.wait()
            pages_in_turn[turn[0]] += 1
            now[0] += 0.002

    await asyncio.gather(*(stream() for _ in range(5)))
    ticking[0] = False
    assert sum(pages_in_turn.values()) == 100
    assert max(pages_in_turn.values()) == 3  # at 0, 2 and 4 ms; the 4th waits
    assert len(pages_in_turn) >= 100 // 3


def _recording(log: list[str], name: str = "work", waits: bool = True):
    """A command *name* N answering N pages, each recorded in *log* by login; *waits*: the
    loop turns between pages, else every page is made at once (a kept listing)."""

    def add(table):
        async def pages(session, args):
            for _ in range(int(args[0])):
                if waits:
                    await asyncio.sleep(0)  # a page: the loop turns between pages
                log.append(session.identity.login)
                yield [{"message": "x" * 100}]

        table.add(name, pages, "N pages, each recorded", action=Action.INFO)

    return add


async def _pages_before_alice(
    make_server, connect, *, name: str, waits: bool, pages: str, depth: int, running: int,
    poll: float,
) -> int:  # fmt: skip
    """jdoe floods 4 connections with *depth* requests of *pages* pages each; once *running*
    pages are made, alice asks one page: how many of jdoe's pages were made before hers."""
    log: list[str] = []
    server = await make_server(add_commands=_recording(log, name, waits))
    floods = [await connect(server, "jdoe") for _ in range(4)]
    alice = await connect(server, "alice")
    await alice.call("ping")
    pending = [
        asyncio.ensure_future(c.call(name, pages, timeout=30)) for c in floods for _ in range(depth)
    ]
    while len(log) < running:  # the flood is running
        await asyncio.sleep(poll)
    sent_at = len(log)
    reply = await alice.call(name, "1", timeout=30)
    assert reply.exitcode == 0
    for done in await asyncio.gather(*pending):
        assert done.exitcode == 0
    return log.index("alice", sent_at) - sent_at


async def test_flood_does_not_starve_another_user(make_server, connect):
    """jdoe floods with streams on 4 connections; alice's one stream is served after at
    most a few of jdoe's pages, not behind jdoe's queue."""
    before = await _pages_before_alice(
        make_server, connect, name="work", waits=True, pages="20", depth=16, running=50,
        poll=0.001,
    )  # fmt: skip
    assert before <= 6, before  # FIFO: behind a page of each of the 64 streams


async def test_a_flood_answered_without_waiting_does_not_starve_another_user(make_server, connect):
    """Pages made without waiting (a kept listing) end each request in the step that starts
    it (net.eager): jdoe's pipelined requests must still count as in flight until the
    loop's turn is over, else jdoe looks light, each connection's whole pipeline is served
    in one read, and alice's request waits behind all of them (seen: 5 s stalls)."""
    before = await _pages_before_alice(
        make_server, connect, name="quick", waits=False, pages="1", depth=64, running=8, poll=0
    )
    assert before <= 16, before  # not behind the 256 requests of jdoe's pipelines


async def test_busy_past_the_hard_bound_across_connections(make_server, connect):
    """The bound counts an identity's requests on all its connections; past it a request is
    answered busy at once, other identities are served."""
    server = await make_server(Limits(identity_soft=4, identity_hard=6))
    one, two = await connect(server, "jdoe"), await connect(server, "jdoe")
    alice = await connect(server, "alice")
    slow = [asyncio.ensure_future(c.call("sleep", "300")) for c in (one, two) for _ in range(3)]
    while server.in_flight.counts.get("jdoe", 0) < 6:
        await asyncio.sleep(0.005)
    busy = await one.call("pwd")
    assert busy.exitcode == EXIT_BUSY
    assert "Server busy: jdoe has 6 requests in flight (at most 6)" in busy.error
    assert (await alice.call("pwd")).exitcode == 0
    assert all(r.exitcode == 0 for r in await asyncio.gather(*slow))
    assert (await two.call("pwd")).exitcode == 0  # below the bound again
    assert server.in_flight.counts.get("jdoe", 0) == 0


async def test_busy_and_resume_on_websocket(make_server, ssl_for):
    server = await make_server(Limits(identity_soft=2, identity_hard=3))
    url = f"wss://127.0.0.1:{server.ports()['websocket']}/websocket/json"
    async with ws_connect(url, ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        for ms in ("300", "300", "300", "0"):
            await ws.send(json.dumps({"command": "sleep", "options": [ms]}))
        replies = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
        codes = [r["metadata"]["exitcode"] for r in replies]
        assert codes[:3] == ["0", "0", "0"]
        assert codes[3] == str(EXIT_BUSY)
        assert "Server busy: jdoe" in replies[3]["metadata"]["error"]
        await ws.send(json.dumps({"command": "pwd", "options": []}))  # read again
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["metadata"]["exitcode"] == "0"
    assert server.in_flight.counts.get("jdoe", 0) == 0


async def test_a_levels_channel_counts_for_its_own_identity(make_server, connect, grid_pki):
    """A VoBox's channel acting for alice counts toward alice's bound, not the VoBox's."""
    server = await make_server(Limits(identity_soft=2, identity_hard=2))
    alice, vobox = await connect(server, "alice"), await connect(server, "vobox")
    for_alice = await vobox.open_channel(grid_pki.users["alice"].dn)
    assert (await for_alice.call("whoami")).exitcode == 0
    slow = [asyncio.ensure_future(alice.call("sleep", "300")) for _ in range(2)]
    while server.in_flight.counts.get("alice", 0) < 2:
        await asyncio.sleep(0.005)
    assert (await for_alice.call("pwd")).exitcode == EXIT_BUSY
    assert (await vobox.call("pwd")).exitcode == 0  # the level itself is not alice
    assert all(r.exitcode == 0 for r in await asyncio.gather(*slow))
    assert (await for_alice.call("pwd")).exitcode == 0


def test_an_identity_alone_never_needs_a_turn():
    """Pages wait at the gate only to be fair to someone: a user alone with many requests
    in flight takes none; once another identity asks, the flooder's pages take turns, the
    other's (light) do not."""
    flight = InFlight(soft=256, hard=1024)
    for _ in range(50):
        assert flight.admit("bob")
    assert not flight.light("bob") and not flight.needs_turn("bob")
    assert flight.admit("jdoe")
    assert flight.needs_turn("bob") and not flight.needs_turn("jdoe")
