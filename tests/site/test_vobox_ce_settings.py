"""The VoBox takes its CE's settings from central's getNumberWaitingJobs answer: a closed
CE gets no new agent until it is reopened, central's slots and agent TTL replace the
VoBox's own, and without them the VoBox's own settings hold."""

from __future__ import annotations

from jalien.site.startup_script import AgentConfig
from jalien.site.vobox import LoopOptions, VoBoxLoop
from jalien.wire import site_api
from jalien.wire.site_api import CESettings, WaitingJobs
from tests.site.test_vobox_loop import Clock, FakeBatch, FakeCentral


class TypedCentral(FakeCentral):
    """Answers as central does over the binary channel: WaitingJobs with the CE's settings."""

    def __init__(self, clock: Clock, waiting: int) -> None:
        super().__init__(clock, waiting)
        self.ce: CESettings | None = None
        self.ttls: list[int] = []

    async def waiting_jobs(self, *, site, ce, ttl, cores):
        self.ttls.append(ttl)
        return WaitingJobs(count=self.waiting, ce=self.ce)


def make(tmp_path):
    clock = Clock()
    central = TypedCentral(clock, waiting=50)
    batch = FakeBatch()
    agent = AgentConfig(
        host="127.0.0.1", port=1, ca_dir="/ca", site="S", ce="ALICE::S::CE", ttl=600, cores=1,
        command=("jalien-bin",),
    )  # fmt: skip
    options = LoopOptions(agents_dir=tmp_path / "agents", max_running=10, max_queued=10)
    return VoBoxLoop(central, batch, agent, options, clock=clock), central, batch, clock


async def test_a_closed_ce_submits_nothing_until_reopened(tmp_path):
    loop, central, _batch, clock = make(tmp_path)
    central.ce = CESettings(name="ALICE::S::CE", status="closed")
    report = await loop.cycle()
    assert report.submitted == 0 and report.ce_status == "closed"
    assert loop.status()["ce_status"] == "closed"
    central.ce = CESettings(name="ALICE::S::CE", status="open", max_running=3, max_queued=3)
    clock.now += 60
    report = await loop.cycle()
    assert report.submitted == 3 and loop.status()["max_running"] == 3  # central's slots


async def test_central_ttl_and_fallback_to_the_vobox_settings(tmp_path):
    loop, central, _batch, clock = make(tmp_path)
    central.ce = CESettings(status="open", ttl=1200, max_queued=2, max_running=2)
    await loop.cycle()
    assert loop.agent.ttl == 1200 and loop.max_running == 2
    central.ce = None  # central no longer configures it: the VoBox's own settings
    clock.now += 60
    await loop.cycle()
    assert loop.agent.ttl == 600 and loop.max_running == 10
    assert central.ttls == [600, 1200]  # the offer carries the TTL in force


def test_waiting_jobs_with_settings_round_trip_and_stay_readable_without():
    typed = WaitingJobs(count=4, ce=CESettings(name="A::B::C", status="closed", ttl=60))
    assert site_api.decode(site_api.encode(typed), WaitingJobs) == typed
    bare = site_api.decode(site_api.encode(WaitingJobs(count=2)), WaitingJobs)
    assert bare.ce is None and bare.count == 2
