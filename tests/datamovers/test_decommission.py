"""SE decommissioning and lost-SE recovery on an in-memory catalogue: the states in order,
files with no other replica copied (following the rules), replicas dropped and their PFNs
queued for deletion, stuck files listed, a restart in the middle resumes; a lost SE's
only-copies reported lost, the others re-replicated; bad input changes nothing."""

from __future__ import annotations

import pytest

from jalien.datamovers import decommission as dm
from jalien.datamovers.lifecycle_ports import SeInfo
from jalien.datamovers.lifecycle_store import LifecycleStore
from jalien.datamovers.rules import PlacementRules, Rule
from tests.datamovers.fakes import Deletions, FakeCatalogue, FakeTransfers

OLD = SeInfo(name="ALICE::OLD::SE", url="root://old/", qos=["disk"])
NEW = SeInfo(name="ALICE::NEW::SE", url="root://new/", qos=["disk"], capacity=1000)
T1 = SeInfo(name="ALICE::T1::SE", url="root://t1/", qos=["t1disk"])


class World:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.catalogue = FakeCatalogue([OLD, NEW, T1])
        self.transfers = FakeTransfers(self.catalogue)
        self.deletions = Deletions()

    async def open(self):
        self.store = LifecycleStore(self.tmp / "lifecycle.db")
        await self.store.start()
        self.rules = PlacementRules(self.catalogue, self.store, self.transfers)
        await self.rules.load()
        self.dec = dm.Decommissioner(
            self.catalogue, self.store, self.rules, self.transfers, self.deletions, page=2
        )
        self.rules.read_only = self.dec.read_only
        await self.dec.load()
        return self

    async def restart(self):
        await self.store.close()
        return await self.open()


@pytest.fixture
async def world(tmp_path):
    w = await World(tmp_path).open()
    yield w
    await w.store.close()


async def test_drain_start_to_done_with_a_restart(world):
    w = world
    await w.rules.add(Rule(name="raw", pattern="/raw/*", copies=1, qos="t1disk"))
    for i in range(5):
        w.catalogue.add(f"/u/only{i}", f"o{i}", OLD.name)  # copied to NEW
    w.catalogue.add("/u/both", "b", OLD.name, NEW.name)  # just dropped
    w.catalogue.add("/raw/r", "r", OLD.name, NEW.name)  # the rule wants it on T1 too
    d = await w.dec.start(OLD.name.lower())
    assert d.state == dm.READ_ONLY and w.dec.read_only() == {OLD.name.upper()}
    assert await w.dec.start(OLD.name) == d  # again: the same one, nothing new
    await w.dec.advance(d)
    assert d.state == dm.REPLICATING
    await w.dec.advance(d)
    assert d.state == dm.WAITING and d.walked == 7
    assert sorted(t.destination for t in w.transfers.queue.values()) == [NEW.name] * 5 + [T1.name]

    w = await w.restart()  # jcentral restarts while the copies run
    d = w.dec.machines[OLD.name]
    assert d.state == dm.WAITING and w.dec.read_only() == {OLD.name.upper()}
    await w.dec.step()
    assert d.state == dm.WAITING  # nothing copied yet
    w.transfers.finish()
    await w.dec.step()
    assert d.state == dm.DONE
    assert all(r.se != OLD.name for f in w.catalogue.files.values() for r in f.replicas)
    assert sorted(r.guid for r in w.deletions.queued) == sorted(
        ["b", "r"] + [f"o{i}" for i in range(5)]
    )
    progress = await w.dec.progress(OLD.name)
    assert progress.files == {dm.F_DROPPED: 7} and progress.stuck == []
    assert len(w.transfers.queue) == 6  # the restart queued nothing twice


async def test_stuck_files_are_listed_then_retried(world):
    w = world
    w.catalogue.add("/u/a", "a", OLD.name)
    w.catalogue.add("/u/b", "b", OLD.name)
    d = await w.dec.start(OLD.name)
    await w.dec.step()
    w.transfers.finish(fail={NEW.name})
    await w.dec.step()
    assert d.state == dm.STUCK
    progress = await w.dec.progress(OLD.name)
    assert [f.lfn for f in progress.stuck] == ["/u/a", "/u/b"]
    assert "the SE refused it" in progress.stuck[0].reason
    assert [r.se for r in w.catalogue.files["/u/a"].replicas] == [OLD.name]  # kept
    await w.dec.retry(OLD.name)
    await w.dec.step()
    w.transfers.finish()
    await w.dec.step()
    assert d.state == dm.DONE and w.catalogue.files["/u/a"].replicas[0].se != OLD.name


async def test_lost_se_recovery(world):
    w = world
    await w.rules.add(Rule(name="two", pattern="/two/*", copies=1, qos="t1disk"))
    w.catalogue.add("/u/only", "only", OLD.name)
    w.catalogue.add("/u/both", "both", OLD.name, NEW.name)
    w.catalogue.add("/two/x", "x", OLD.name, NEW.name)
    d = await w.dec.start(OLD.name, lost=True)
    await w.dec.step()
    assert d.state == dm.WAITING
    progress = await w.dec.progress(OLD.name)
    assert [f.lfn for f in progress.lost] == ["/u/only"]
    assert [x.guid for x in await w.store.lost_replicas(OLD.name)] == ["only"]
    assert [r.se for r in w.catalogue.files["/u/both"].replicas] == [NEW.name]
    assert [t.destination for t in w.transfers.queue.values()] == [T1.name]
    w.transfers.finish()
    await w.dec.step()
    assert d.state == dm.DONE and not w.deletions.queued  # nothing to delete on a lost SE
    assert {r.se for r in w.catalogue.files["/two/x"].replicas} == {NEW.name, T1.name}


async def test_bad_input_changes_nothing(world):
    w = world
    with pytest.raises(dm.DecommissionError, match="no such SE: ALICE::NOPE"):
        await w.dec.start("ALICE::NOPE")
    await w.dec.start(OLD.name)
    with pytest.raises(dm.DecommissionError, match="being drained already"):
        await w.dec.start(OLD.name, lost=True)
    with pytest.raises(dm.DecommissionError, match="not being decommissioned"):
        await w.dec.progress(NEW.name)
    assert [se for se, _ in await w.store.docs("decommissions")] == [OLD.name]


async def test_another_process_sees_rules_and_decommissions(world, tmp_path):
    """jcentral's workers share lifecycle.db: what one starts or adds, another follows
    (read-only SEs, rules at commit), and a removed rule goes from both."""
    w = world
    other = PlacementRules(w.catalogue, w.store, w.transfers)
    other_dec = dm.Decommissioner(w.catalogue, w.store, other, w.transfers, w.deletions)
    other.read_only = other_dec.read_only
    await w.dec.start(OLD.name)
    await w.rules.add(Rule(name="raw", pattern="/raw/*", copies=1, qos="t1disk"))
    await other.follow()
    await other_dec.follow()
    assert other_dec.read_only() == {OLD.name.upper()}
    assert [r.name for r in other.matching("/raw/x")] == ["raw"]
    await w.rules.remove("raw")
    await other.follow()
    assert other.matching("/raw/x") == []
