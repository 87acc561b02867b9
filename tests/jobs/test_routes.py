"""Agent routes between centrals (jobs.routes) on one SQLite file, as the workers of one
host share it: a kill and a spy question left for the central holding the agent, the
pushes following the agent to the central it reports to after a failover, the answer
going back to the asking central."""

from __future__ import annotations

import asyncio

from jalien.jobs.routes import Router, Routes


def run(coro):
    return asyncio.run(coro)


def test_a_push_reaches_the_central_holding_the_agent(tmp_path):
    async def go():
        a, b = Routes.sqlite(tmp_path / "routes.db"), Routes.sqlite(tmp_path / "routes.db")
        await a.start()
        await b.start()
        try:
            ra, rb = Router(a, "A"), Router(b, "B")
            got: list[tuple[str, int, dict]] = []
            rb.handlers["kill"] = lambda job, body: got.append(("B", job, body))
            ra.handlers["kill"] = lambda job, body: got.append(("A", job, body))
            rb.hold(7)
            await rb.flush()
            assert await a.owner(7) == "B"
            assert await ra.send_to_agent(7, "kill", {"queueId": 7})
            assert not await rb.send_to_agent(7, "kill", {"queueId": 7})  # its own: local
            assert not await ra.send_to_agent(8, "kill", {"queueId": 8})  # nobody's
            await ra.step()
            assert got == []
            await rb.step()
            assert got == [("B", 7, {"queueId": 7})]
            await rb.step()  # delivered once
            assert len(got) == 1
            # B dies with a kill waiting for it; the agent reports to A, which takes it
            assert await ra.send_to_agent(7, "kill", {"queueId": 7})
            ra.hold(7)
            await ra.flush()
            await ra.step()
            assert got[-1] == ("A", 7, {"queueId": 7})
            # the job ends: its route goes
            ra.release(7)
            await ra.flush()
            assert await a.owner(7) == ""
        finally:
            await a.close()
            await b.close()

    run(go())


def test_old_pushes_expire(tmp_path):
    async def go():
        routes = Routes.sqlite(tmp_path / "routes.db")
        await routes.start()
        try:
            await routes.send("gone", 1, "kill", {"queueId": 1})
            await routes.prune(now=1e12)
            assert await routes.take("gone") == []
        finally:
            await routes.close()

    run(go())
