"""Placement rules on an in-memory catalogue: a rule that cannot be satisfied is refused and
changes nothing; a commit queues the missing copies (most free space first, never a
read-only SE); the checker repairs, counts and does not double a copy in flight."""

from __future__ import annotations

import pytest

from jalien.datamovers.lifecycle_ports import SeInfo
from jalien.datamovers.lifecycle_store import LifecycleStore
from jalien.datamovers.rules import PlacementRules, Rule, RuleError
from tests.datamovers.fakes import FakeCatalogue, FakeTransfers

T0 = SeInfo(name="ALICE::CERN::EOS", url="root://t0/", qos=["disk"])
T1A = SeInfo(name="ALICE::FZK::SE", url="root://a/", qos=["disk", "t1disk"], capacity=100, used=10)
T1B = SeInfo(name="ALICE::CNAF::SE", url="root://b/", qos=["disk", "t1disk"], capacity=100, used=50)
TAPE = SeInfo(name="ALICE::CERN::TAPE", url="root://t/", qos=["tape"])


@pytest.fixture
async def world(tmp_path):
    catalogue = FakeCatalogue([T0, T1A, T1B, TAPE])
    store = LifecycleStore(tmp_path / "lifecycle.db")
    await store.start()
    transfers = FakeTransfers(catalogue)
    read_only: set[str] = set()
    rules = PlacementRules(catalogue, store, transfers, read_only=lambda: read_only)
    yield catalogue, store, transfers, rules, read_only
    await store.close()


RAW = Rule(name="raw-t1", pattern="/alice/data/*/raw/*", copies=1, qos="t1disk")


async def test_bad_rules_are_refused_and_change_nothing(world):
    _catalogue, store, _, rules, read_only = world
    bad = [
        (Rule(name="x", pattern="/a/*", copies=3, qos="t1disk"), "cannot be satisfied: 3 replicas"),
        (Rule(name="x", pattern="/a/*", copies=1, qos="ssd"), r"0 SE\(s\) with QoS tag 'ssd'"),
        (Rule(name="x", pattern="/a/*", copies=1, ses=["ALICE::NO::SE"]), "no such SE"),
        (Rule(name="x", pattern="a/*", copies=1), "must be absolute"),
        (Rule(name="x y", pattern="/a/*", copies=1), "bad rule name"),
        (Rule(name="x", pattern="/a/*", copies=0), "1..16"),
    ]
    for rule, why in bad:
        with pytest.raises(RuleError, match=why):
            await rules.add(rule)
    read_only.add(T1A.name.upper())  # being decommissioned: it does not count
    with pytest.raises(RuleError, match=r"satisfied: 2 replicas.*decommissioned: ALICE::FZK"):
        await rules.add(Rule(name="x", pattern="/a/*", copies=2, qos="t1disk"))
    with pytest.raises(RuleError, match=r"0 SE.*being decommissioned: ALICE::FZK::SE"):
        await rules.add(Rule(name="x", pattern="/a/*", copies=1, ses=[T1A.name]))
    read_only.clear()
    assert await store.docs("rules") == [] and rules.listing() == []
    await rules.add(RAW)
    with pytest.raises(RuleError, match="exists"):
        await rules.add(RAW)
    with pytest.raises(RuleError, match="no such rule"):
        await rules.remove("nope")


async def test_commit_queues_the_copy_to_the_emptiest_t1(world):
    catalogue, store, transfers, rules, _read_only = world
    await rules.add(RAW)
    catalogue.add("/alice/data/2026/raw/f1", "g1", T0.name)
    catalogue.add("/alice/data/2026/esd/f2", "g2", T0.name)  # no rule
    assert await rules.on_commit("/alice/data/2026/esd/f2") == []
    [tid] = await rules.on_commit("/alice/data/2026/raw/f1")
    assert transfers.queue[tid].destination == T1A.name  # 90 free against 50
    # a second commit hook or check while it is in flight does not copy again
    assert await rules.on_commit("/alice/data/2026/raw/f1") == []
    state = await rules.check("raw-t1")
    assert (state.files, state.queued, state.satisfied) == (1, 1, 0) and len(transfers.queue) == 1
    transfers.finish()
    state = await rules.check("raw-t1")
    assert (state.files, state.satisfied, state.queued) == (1, 1, 0)
    # the state survives a restart (it is in lifecycle.db)
    again = PlacementRules(catalogue, store, transfers)
    await again.load()
    assert (
        again.listing()[0].state.satisfied == 1
        and again.listing()[0].rule == rules.records["raw-t1"].rule
    )


async def test_checker_repairs_and_skips_read_only_ses(world):
    catalogue, _, transfers, rules, read_only = world
    await rules.add(RAW)
    for i in range(4):
        catalogue.add(f"/alice/data/2025/raw/f{i}", f"g{i}", T0.name)
    read_only.add(T1A.name.upper())
    state = await rules.check("raw-t1")
    assert state.queued == 4 and {t.destination for t in transfers.queue.values()} == {T1B.name}
    read_only.add(T1B.name.upper())
    catalogue.add("/alice/data/2025/raw/late", "gl", T0.name)
    state = await rules.check("raw-t1")
    assert state.unsatisfiable == 1 and state.queued == 4
    assert rules.figures()["unsatisfiable"] == 1
