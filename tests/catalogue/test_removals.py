"""What a removal hands to the removal queue (both backends): the replicas of the files it
leaves without an LFN are held before it commits and released after; a GUID another LFN
still has is dropped from the queue; expired LFNs are removed the same way."""

from __future__ import annotations

from collections.abc import Sequence

from jalien.catalogue.expiry import LfnExpiry
from jalien.catalogue.expiry_reaper import ExpiryReaper
from jalien.catalogue.model import Replica, now_ms
from tests.catalogue.conftest import ADMIN, JDOE

HOME = "/alice/cern.ch/user/j/jdoe"


class Queue:
    def __init__(self) -> None:
        self.held: dict[int, Replica] = {}
        self.released: list[Replica] = []
        self.dropped: list[Replica] = []
        self.abandoned: list[int] = []

    async def hold(self, replicas: Sequence[Replica]) -> list[int]:
        ids = list(range(len(self.held) + 1, len(self.held) + 1 + len(replicas)))
        self.held.update(zip(ids, replicas, strict=True))
        return ids

    async def release(self, ids: Sequence[int]) -> None:
        self.released += [self.held[i] for i in ids]

    async def drop(self, ids: Sequence[int]) -> None:
        self.dropped += [self.held[i] for i in ids]

    def abandon(self, ids: Sequence[int]) -> None:
        self.abandoned += ids


async def _file(catalogue, name: str, guid: str, ses=("SE::A", "SE::B")) -> None:
    await catalogue.register(JDOE, f"{HOME}/{name}", 10, "0" * 32, guid=guid)
    await catalogue.backend.add_replicas(
        [Replica(guid=guid, se=se, pfn=f"root://{se}/{guid}") for se in ses]
    )


async def test_rm_and_rm_r_release_what_they_orphan(catalogue):
    queue = Queue()
    catalogue.removals = queue
    await catalogue.mkdir(JDOE, f"{HOME}/d/sub", parents=True)
    await _file(catalogue, "one", "00000000-0000-0000-0000-000000000001")
    await _file(catalogue, "d/a", "00000000-0000-0000-0000-000000000002")
    await _file(catalogue, "d/sub/b", "00000000-0000-0000-0000-000000000003", ("SE::A",))
    await catalogue.rm(JDOE, f"{HOME}/one")
    assert sorted(r.se for r in queue.released) == ["SE::A", "SE::B"]
    await catalogue.rm(JDOE, f"{HOME}/d", recursive=True)
    assert len(queue.released) == 5 and not queue.dropped and not queue.abandoned
    for i in (1, 2, 3):  # the replica rows went with their last LFN
        assert await catalogue.backend.replicas(f"00000000-0000-0000-0000-00000000000{i}") == []


async def test_a_guid_still_referenced_is_not_released(catalogue):
    queue = Queue()
    catalogue.removals = queue
    guid = "00000000-0000-0000-0000-000000000009"
    await _file(catalogue, "x", guid)
    await catalogue.register(JDOE, f"{HOME}/y", 10, "0" * 32, guid=guid)  # a second LFN
    await catalogue.rm(JDOE, f"{HOME}/x")
    assert queue.released == [] and len(queue.dropped) == 2
    assert len(await catalogue.backend.replicas(guid)) == 2


async def test_expired_lfns_are_removed(catalogue, tmp_path):
    queue = Queue()
    catalogue.removals = queue
    await _file(catalogue, "old", "00000000-0000-0000-0000-000000000010")
    await _file(catalogue, "new", "00000000-0000-0000-0000-000000000011")
    expiry = LfnExpiry(tmp_path / "expiry.db")
    now = now_ms()
    await expiry.set({f"{HOME}/old": now - 1000, f"{HOME}/new": now + 3_600_000, "/gone": 1})
    reaper = ExpiryReaper(catalogue, expiry, ADMIN)
    assert await reaper.reap() == 1
    assert await catalogue.get(f"{HOME}/old") is None
    assert await catalogue.get(f"{HOME}/new") is not None
    assert len(queue.released) == 2
    assert await expiry.get([f"{HOME}/old", f"{HOME}/new", "/gone"]) == {
        f"{HOME}/new": now + 3_600_000
    }
    await expiry.close()
