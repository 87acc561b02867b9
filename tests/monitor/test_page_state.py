"""What the monitoring page shows a caller (roles/central_monitor.PageState): an admin sees
every user's jobs, the agents and errors and the background steps; a user only their own
jobs and the agents running them; the embedded SE's space; the state is cached briefly."""

from __future__ import annotations

from dataclasses import dataclass

from jalien.jobs.broker import Broker
from jalien.jobs.queue import NewJob
from jalien.jobs.service import JobService
from jalien.jobs.states import JobState
from jalien.jobs.store import TaskQueueStore
from jalien.loops import Loop, LoopRegistry
from jalien.metrics import Metrics
from jalien.net.identity import Identity
from jalien.roles.central_monitor import PageState, build_monitor
from jalien.wire.monitor_api import AgentReport, SiteReport, Usage


@dataclass
class SE:
    name: str
    site: str
    protocols: list[str]


class Catalogue:
    async def list_ses(self) -> list[SE]:
        return [SE("ALICE::LOCAL::SE", "LOCAL", ["https"]), SE("ALICE::FAR::SE", "FAR", ["root"])]


async def test_admins_see_everything_users_their_own(tmp_path):
    store = TaskQueueStore(tmp_path / "tq.db")
    await store.start()
    try:
        jobs = JobService(store, Broker())
        ids = await store.insert([NewJob(user="alice", jdl="x"), NewJob(user="bob", jdl="y"),
                                  NewJob(user="bob", jdl="z", state=JobState.RUNNING)])  # fmt: skip
        monitor = build_monitor(jobs, None)
        monitor.grid.site("vobox", SiteReport(site="S", ce="S::CE", max_running=4, running=1,
                                              errors=["oops"]))  # fmt: skip
        monitor.grid.agent("1:wn1", AgentReport(ce="S::CE", node="wn1", queue_id=ids[2],
                                                usage=Usage(cpu=1.0)), user="bob")  # fmt: skip
        loops = LoopRegistry()

        async def step() -> None:
            return None

        loops.add(Loop("a-step", step, 60.0))
        metrics = Metrics("test", process=False)
        metrics.transfers["DONE"] = 2
        state = PageState(monitor, jobs, Catalogue(), loops, metrics,  # type: ignore[arg-type]
                          local_se=("ALICE::LOCAL::SE", tmp_path))  # fmt: skip
        admin = await state(Identity(dn="/CN=jdoe", login="jdoe", roles=("users", "admin")))
        assert admin["admin"] and admin["jobs"]["by_state"] == {"WAITING": 2, "RUNNING": 1}
        assert admin["jobs"]["by_user"] == {"alice": {"WAITING": 1},
                                            "bob": {"WAITING": 1, "RUNNING": 1}}  # fmt: skip
        assert [a["node"] for a in admin["agents"]] == ["wn1"] and admin["errors"]
        assert [loop["name"] for loop in admin["loops"]] == ["a-step"]
        assert admin["transfers"] == {"DONE": 2}
        local, far = admin["ses"]
        assert local["used"] > 0 and local["free"] > 0 and far["used"] is None
        assert admin["sites"][0]["slots"] == 4
        alice = await state(Identity(dn="/CN=alice", login="alice", roles=("users",)))
        assert not alice["admin"] and alice["jobs"]["by_user"] == {"alice": {"WAITING": 1}}
        assert alice["jobs"]["by_state"] == {"WAITING": 1}
        assert alice["agents"] == [] and alice["errors"] == [] and alice["loops"] == []
        assert alice["sites"][0]["ce"] == "S::CE"  # the CEs are everyone's
        bob = await state(Identity(dn="/CN=bob", login="bob", roles=("users",)))
        assert [a["job"] for a in bob["agents"]] == [ids[2]]
        await store.insert([NewJob(user="alice", jdl="w")])
        again = await state(Identity(dn="/CN=alice", login="alice", roles=("users",)))
        assert again is alice  # within the interval: the same state, no new query
    finally:
        await store.close()
