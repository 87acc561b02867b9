"""The data movers' queues and state machines with in-memory ports: deletions (hold,
release, recovery after a crash, retries and backoff, FAILED), transfers (mirror's checks,
the worker pool's limits per SE, retries, a restart mid-transfer: no loss, no double
registration); each on SQLite and on MariaDB."""

from __future__ import annotations

import asyncio
import time

import pytest

from jalien.auth.policy import IdentityKind
from jalien.datamovers.deletion import DeletionService
from jalien.datamovers.model import (
    DELETION_MOVES,
    DONE,
    FAILED,
    FAILED_T,
    HELD,
    KILLED,
    QUEUED,
    TRANSFER_MOVES,
    TRANSFERRING,
    WAITING,
    IllegalMove,
    PfnRef,
    backoff,
    check_move,
)
from jalien.datamovers.ports import FileRecord, StorageError
from jalien.datamovers.store import DataMoverStore
from jalien.datamovers.transfer import TransferService
from jalien.wire.errors import RequestError
from tests.catalogue.mariadb_servers import mariadb_dsn, mariadb_system  # noqa: F401


class Who:
    def __init__(self, login: str, admin: bool = False) -> None:
        self.login = login
        self.kind = IdentityKind.ADMIN if admin else IdentityKind.USER
        self.roles = ("admin",) if admin else ("users",)


ALICE, BOB, U, ADMIN = Who("alice"), Who("bob"), Who("u"), Who("root", admin=True)


class MemFiles:
    def __init__(self) -> None:
        self.lfns: dict[str, FileRecord] = {}
        self.reps: dict[str, list[PfnRef]] = {}
        self.added: list[PfnRef] = []

    def put(self, lfn: str, guid: str, owner: str, ses: list[str]) -> None:
        self.lfns[lfn] = FileRecord(lfn=lfn, guid=guid, size=10, md5="m", owner=owner)
        self.reps[guid] = [PfnRef(guid=guid, se=s, pfn=f"{s}/{guid}") for s in ses]

    async def file(self, lfn: str) -> FileRecord | None:
        rec = self.lfns.get(lfn)
        if rec is None:
            return None
        rec.replicas = list(self.reps.get(rec.guid, []))
        return rec

    async def files_under(self, lfn: str) -> list[str]:
        return sorted(k for k in self.lfns if k.startswith(lfn.rstrip("/") + "/"))

    async def se_names(self) -> list[str]:
        return ["SE::A", "SE::B", "SE::C"]

    async def replicas(self, guid: str) -> list[PfnRef]:
        return list(self.reps.get(guid, []))

    async def referenced(self, guid: str) -> bool:
        return any(r.guid == guid for r in self.lfns.values())

    async def forget(self, guid: str) -> None:
        if not await self.referenced(guid):
            self.reps.pop(guid, None)

    async def add_replica(self, ref: PfnRef) -> bool:
        if not await self.referenced(ref.guid):
            return False
        if ref not in self.reps[ref.guid]:
            self.reps[ref.guid].append(ref)
            self.added.append(ref)
        return True

    async def drop_replica(self, guid: str, se: str) -> list[PfnRef]:
        gone = [r for r in self.reps.get(guid, []) if r.se == se]
        self.reps[guid] = [r for r in self.reps.get(guid, []) if r.se != se]
        return gone


class MemStorage:
    def __init__(self) -> None:
        self.files: set[str] = set()
        self.fail: dict[str, int] = {}  # pfn -> failures left
        self.deleted: list[str] = []
        self.copies = 0
        self.gate: asyncio.Event | None = None
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}

    async def delete(self, ref: PfnRef) -> None:
        if self.fail.get(ref.pfn, 0):
            self.fail[ref.pfn] -= 1
            raise StorageError("SE down")
        self.files.discard(ref.pfn)
        self.deleted.append(ref.pfn)

    async def destination(self, se: str, guid: str) -> str:
        return f"{se}/{guid}"

    async def copy(
        self, source: PfnRef, target: PfnRef, size: int, md5: str, fresh: bool = False
    ) -> None:
        self.running[target.se] = self.running.get(target.se, 0) + 1
        self.most[target.se] = max(self.most.get(target.se, 0), self.running[target.se])
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail.get(target.pfn, 0):
                self.fail[target.pfn] -= 1
                raise StorageError("copy failed")
            self.copies += 1
            self.files.add(target.pfn)
        finally:
            self.running[target.se] -= 1


@pytest.fixture(params=["sqlite", "mariadb"])
async def parts(request, tmp_path):
    if request.param == "sqlite":
        store = DataMoverStore(tmp_path / "q.db")
    else:  # the same queues on MariaDB (at scale): a fresh database on the system server
        store = DataMoverStore.mariadb(request.getfixturevalue("mariadb_dsn"))
    await store.start()
    files, storage = MemFiles(), MemStorage()
    deletions = DeletionService(store, files, storage, backoff_base=0.0, max_attempts=3)
    transfers = TransferService(store, files, storage, deletions, workers=4, per_se=2,
                                backoff_base=0.0)  # fmt: skip
    yield store, files, storage, deletions, transfers
    await transfers.close()
    await store.close()


def test_moves_and_backoff():
    check_move(DELETION_MOVES, HELD, QUEUED)
    check_move(TRANSFER_MOVES, WAITING, TRANSFERRING)
    check_move(TRANSFER_MOVES, TRANSFERRING, WAITING)
    for old, new in ((DONE, WAITING), (KILLED, WAITING), (WAITING, FAILED_T), (HELD, FAILED)):
        moves = DELETION_MOVES if old == HELD else TRANSFER_MOVES
        with pytest.raises(IllegalMove):
            check_move(moves, old, new)
    assert [backoff(n, 10, 60) for n in (1, 2, 3, 4, 9)] == [10, 20, 40, 60, 60]


async def test_deletion_hold_release_drop_and_retries(parts):
    _store, _files, storage, deletions, _ = parts
    refs = [PfnRef(guid=f"g{i}", se="SE::A", pfn=f"p{i}") for i in range(4)]
    storage.files.update(r.pfn for r in refs)
    held = await deletions.hold(refs)
    await deletions.step()  # held: nothing deleted yet
    assert storage.deleted == []
    await deletions.release(held[:3])
    await deletions.drop(held[3:])
    storage.fail["p2"] = 1
    await deletions.step()
    assert sorted(storage.deleted) == ["p0", "p1"]
    left = await deletions.pending()
    assert [(d.pfn, d.state, d.attempts, d.error) for d in left] == [("p2", QUEUED, 1, "SE down")]
    await deletions.step()  # backoff 0: retried at once
    assert "p2" in storage.deleted and await deletions.pending() == []
    assert storage.files == {"p3"}  # dropped: kept on its SE
    assert (await deletions.counts()).deleted == 3


async def test_deletion_gives_up_then_admin_retries(parts):
    _, _, storage, deletions, _ = parts
    storage.fail["p"] = 5
    await deletions.enqueue([PfnRef(guid="g", se="SE::A", pfn="p")])
    for _ in range(3):
        await deletions.step()
    [row] = await deletions.pending()
    assert row.state == FAILED and row.attempts == 3
    await deletions.step()
    assert storage.fail["p"] == 2  # FAILED: not tried again
    assert await deletions.retry() == 1
    storage.fail["p"] = 0
    await deletions.step()
    assert await deletions.pending() == []


async def test_deletion_skips_a_pfn_registered_again(parts):
    _, files, storage, deletions, _ = parts
    files.put("/f", "g", "u", ["SE::A"])
    await deletions.enqueue(files.reps["g"])
    await deletions.step()
    assert storage.deleted == [] and await deletions.pending() == []


async def test_recovery_of_held_rows_after_a_crash(parts, tmp_path):
    store, files, storage, _, _ = parts
    files.put("/kept", "gk", "u", ["SE::A"])  # its removal did not commit
    files.reps["gone"] = [PfnRef(guid="gone", se="SE::A", pfn="SE::A/gone")]  # it did
    files.put("/dm", "gd", "u", ["SE::A", "SE::B"])
    dropped = files.reps["gd"][1]
    crashed = DeletionService(store, files, storage)
    await crashed.hold([*files.reps["gk"], *files.reps["gone"], dropped])
    files.reps["gd"] = files.reps["gd"][:1]  # deleteMirror committed, release lost
    # a new process: its recovery looks at the rows held before it
    fresh = DeletionService(store, files, storage, backoff_base=0.0)
    assert await fresh.recover(time.time() + 1) == 2
    await fresh.step()
    assert sorted(storage.deleted) == ["SE::A/gone", "SE::B/gd"]
    assert "gone" not in files.reps  # leftover replica rows dropped
    assert await fresh.pending() == []


async def test_mirror_checks_change_nothing(parts):
    store, files, _, _, transfers = parts
    files.put("/f", "g", "alice", ["SE::A"])
    with pytest.raises(RequestError, match="unknown SE"):
        await transfers.mirror(ALICE, "/f", "SE::NOPE")
    with pytest.raises(RequestError, match="already exists on SE") as exc:
        await transfers.mirror(ALICE, "/f", "se::a")
    assert exc.value.exitcode == 17
    with pytest.raises(RequestError, match="does not own"):
        await transfers.mirror(BOB, "/f", "SE::B")
    with pytest.raises(RequestError, match="No such file"):
        await transfers.mirror(ALICE, "/nothing", "SE::B")
    transfers.read_only = lambda: {"SE::C"}  # being decommissioned: takes no new file
    for who in (ALICE, ADMIN):
        with pytest.raises(RequestError, match="SE::C is being decommissioned") as exc:
            await transfers.mirror(who, "/f", "se::c")
        assert exc.value.exitcode == 22
    with pytest.raises(RequestError, match="being decommissioned"):
        await transfers.submit("/f", "SE::C")  # nor a service's (rules, another drain)
    assert await store.list_transfers() == []
    [queued] = await transfers.mirror(ADMIN, "/f", "SE::B")  # an admin may
    [again] = await transfers.mirror(ALICE, "/f", "SE::B")
    assert queued.id == again.id  # the same transfer, not a second one


async def test_transfers_limits_per_se_and_done(parts):
    _, files, storage, _, transfers = parts
    for i in range(6):
        files.put(f"/d/f{i}", f"g{i}", "u", ["SE::A"])
    files.put("/d/g", "gg", "u", ["SE::A"])
    queued = await transfers.mirror(U, "/d", "SE::B")
    assert len(queued) == 7 and all(q.id for q in queued)
    await transfers.submit("/d/g", "SE::C")
    storage.gate = asyncio.Event()
    await transfers.step()
    assert len(transfers._running) == 3  # 2 to SE::B (per_se), 1 to SE::C
    states = [t.state for t in await transfers.listing()]
    assert states.count(TRANSFERRING) == 3
    for _ in range(1000):  # the three copies reach the SEs (bounded)
        if sum(storage.running.values()) == 3:
            break
        await asyncio.sleep(0.001)
    assert storage.running == {"SE::B": 2, "SE::C": 1}
    storage.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
        await transfers.step()
        if all(t.state == DONE for t in await transfers.listing()):
            break
        await asyncio.gather(*transfers._running.values())
    assert all(t.state == DONE for t in await transfers.listing())
    assert storage.most == {"SE::B": 2, "SE::C": 1}
    assert len(files.added) == 8


async def test_transfer_retries_then_fails(parts):
    _, files, storage, deletions, transfers = parts
    files.put("/f", "g", "u", ["SE::A"])
    storage.fail["SE::B/g"] = 9
    [q] = await transfers.mirror(U, "/f", "SE::B", attempts=2)
    for _ in range(2):
        await transfers.step()
        await asyncio.gather(*transfers._running.values())
    t = await transfers.get(q.id)
    assert t is not None and t.state == FAILED_T and t.attempts == 2
    assert "copy failed" in t.reason
    [left] = await deletions.pending()  # whatever the attempts left at the target goes
    assert (left.se, left.pfn) == ("SE::B", "SE::B/g")


async def test_restart_mid_transfer_no_loss_no_double(parts, tmp_path):
    store, files, storage, deletions, transfers = parts
    files.put("/f", "g", "u", ["SE::A"])
    [q] = await transfers.mirror(U, "/f", "SE::B", remove_source="SE::A")
    storage.gate = asyncio.Event()
    await transfers.step()
    await asyncio.sleep(0)
    await transfers.close()  # "killed": the row stays TRANSFERRING
    assert (await transfers.get(q.id)).state == TRANSFERRING
    # the copy had landed and been registered before the kill
    storage.files.add("SE::B/g")
    await files.add_replica(PfnRef(guid="g", se="SE::B", pfn="SE::B/g"))
    storage.gate = None
    again = TransferService(store, files, storage, deletions, backoff_base=0.0)
    await again.step()
    await asyncio.gather(*again._running.values())
    t = await again.get(q.id)
    assert t is not None and t.state == DONE
    assert files.added == [PfnRef(guid="g", se="SE::B", pfn="SE::B/g")]  # once
    assert [r.se for r in files.reps["g"]] == ["SE::B"]  # -r SE::A: the source went
    await deletions.step()
    assert storage.deleted == ["SE::A/g"]


async def test_delete_mirror(parts):
    _, files, storage, deletions, transfers = parts
    files.put("/f", "g", "u", ["SE::A", "SE::B"])
    with pytest.raises(RequestError, match="does not own"):
        await transfers.delete_mirror(BOB, "/f", "SE::A")
    await transfers.delete_mirror(U, "/f", "SE::A")
    with pytest.raises(RequestError, match="last replica"):
        await transfers.delete_mirror(U, "/f", "SE::B")
    await deletions.step()
    assert storage.deleted == ["SE::A/g"] and [r.se for r in files.reps["g"]] == ["SE::B"]


async def test_leases_of_other_jcentrals(parts):
    store, files, storage, deletions, _ = parts
    files.put("/f", "g", "u", ["SE::A"])
    files.put("/h", "h", "u", ["SE::A"])
    other = TransferService(store, files, storage, deletions, owner="other:1", lease=60)
    [q1] = await other.mirror(U, "/f", "SE::B")
    [q2] = await other.mirror(U, "/h", "SE::B")
    storage.gate = asyncio.Event()
    await other.step()
    await asyncio.sleep(0)
    assert {t.owner for t in await store.list_transfers()} == {"other:1"}
    mine = TransferService(store, files, storage, deletions, owner="me:2", lease=60)
    await mine.step()  # the other jcentral's copies are alive: left alone
    assert mine._running == {}
    t1 = await store.get_transfer(q1.id)
    assert t1 is not None
    await store.move_transfer(t1, TRANSFERRING, updated=time.time() - 120)  # its lease ran out
    mine._renewed = 0.0
    storage.gate.set()
    await other.close()
    await mine.step()
    assert list(mine._running) == [q1.id]  # taken over; q2 stays the other's
    await asyncio.gather(*mine._running.values())
    assert (await store.get_transfer(q1.id)).state == DONE
    assert (await store.get_transfer(q2.id)).state == TRANSFERRING
    await mine.close()
