"""Physical removal: PFNs whose catalogue entries went are removed from their SEs.

How a removal stays crash-safe (a kill -9 anywhere loses no PFN and deletes no PFN that is
still registered):
1. ``hold(refs)``: before the catalogue removal commits, its PFNs are written HELD;
2. the catalogue removal commits;
3. ``release(ids)`` moves them to QUEUED (``drop(ids)`` forgets them if it did not commit).
A process killed between 1 and 3 leaves HELD rows: after ``hold_grace`` seconds (rows this
process holds for a removal still in progress excepted) a step asks
the catalogue whether an LFN still points to each GUID; if none does, the PFN is queued
(and its leftover replica rows dropped), else the row is forgotten.

A step (``DeletionService.step``, the ``pfn-deletion`` loop of jcentral) takes the QUEUED
rows that are due, removes each on its SE through the ``Storage`` port (at most
``parallel`` at once, ``per_se`` per SE), forgets the deleted ones and backs off the failed
ones (``backoff``); after ``max_attempts`` a row is FAILED: listed by ``listDeletions``
for an admin, retried on demand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from jalien.datamovers.model import (
    FAILED,
    HELD,
    QUEUED,
    Deletion,
    DeletionCounts,
    PfnRef,
    backoff,
)
from jalien.datamovers.ports import Files, Storage, StorageError
from jalien.datamovers.store import DataMoverStore
from jalien.loops import Loop

log = logging.getLogger("jalien.datamovers.deletion")


class DeletionService:
    def __init__(
        self,
        store: DataMoverStore,
        files: Files,
        storage: Storage,
        *,
        batch: int = 500,
        parallel: int = 16,
        per_se: int = 8,
        max_attempts: int = 10,
        backoff_base: float = 30.0,
        backoff_max: float = 3600.0,
        hold_grace: float = 300.0,
    ) -> None:
        self.store = store
        self.files = files
        self.storage = storage
        self.batch = batch
        self.parallel = parallel
        self.per_se = per_se
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.hold_grace = hold_grace
        self.deleted = 0
        self.attempts_failed = 0
        self._loop: Loop | None = None
        self._holding: set[int] = set()  # held by removals in progress in this process

    # -- the queue (what the catalogue's removals and other services call)
    async def enqueue(self, refs: Sequence[PfnRef]) -> list[int]:
        """Queue PFNs whose catalogue entries are already gone (due at once)."""
        ids = await self.store.add_deletions(refs, QUEUED)
        self._wake()
        return ids

    async def hold(self, refs: Sequence[PfnRef]) -> list[int]:
        """Before a catalogue removal commits: its PFNs, durable but not yet to delete."""
        ids = await self.store.add_deletions(refs, HELD)
        self._holding.update(ids)
        return ids

    async def release(self, ids: Sequence[int]) -> None:
        """The removal committed: the held PFNs are to delete."""
        moved = await self.store.move_deletions(ids, HELD, QUEUED)
        self._holding.difference_update(ids)
        if moved:
            self._wake()

    async def drop(self, ids: Sequence[int]) -> None:
        """The removal did not happen (or kept these PFNs' files): forget them."""
        await self.store.drop_deletions(ids)
        self._holding.difference_update(ids)

    def abandon(self, ids: Sequence[int]) -> None:
        """A removal that raised: whether it committed is unknown, the recovery decides
        (after ``hold_grace``) as for a process that died."""
        self._holding.difference_update(ids)

    async def retry(self, ids: Sequence[int] = ()) -> int:
        """FAILED rows (all of them without *ids*) are queued again, due at once."""
        if not ids:
            ids = [d.id for d in await self.store.list_deletions(FAILED)]
        moved = await self.store.move_deletions(ids, FAILED, QUEUED)
        if moved:
            self._wake()
        return moved

    async def pending(self, state: str = "", se: str = "", limit: int = 0) -> list[Deletion]:
        """What is left to delete (HELD, QUEUED) and what could not be (FAILED)."""
        return await self.store.list_deletions(state, se, limit)

    async def counts(self) -> DeletionCounts:
        by_state = await self.store.deletion_counts()
        return DeletionCounts(
            held=by_state.get(HELD, 0),
            queued=by_state.get(QUEUED, 0),
            failed=by_state.get(FAILED, 0),
            deleted=self.deleted,
            attempts_failed=self.attempts_failed,
        )

    # -- the work
    def loop(self, interval: float) -> Loop:
        self._loop = Loop("pfn-deletion", self.step, interval, logger=log, jitter=0.1)
        return self._loop

    def _wake(self) -> None:
        if self._loop is not None:
            self._loop.run_now()

    async def step(self) -> None:
        """One pass: recover stale HELD rows, then delete what is due (one batch)."""
        await self.recover(time.time() - self.hold_grace)
        due = await self.store.due_deletions(time.time(), self.batch)
        if not due:
            return
        # a PFN registered again since it was queued (the same GUID mirrored back to the
        # same SE: AliEn's PFN layout gives it the same path) is not deleted
        registered = await self._registered({r.guid for r in due})
        again = [r.id for r in due if (r.guid, r.pfn) in registered]
        if again:
            await self.store.drop_deletions(again)
            due = [r for r in due if (r.guid, r.pfn) not in registered]
        everyone = asyncio.Semaphore(self.parallel)
        per_se: dict[str, asyncio.Semaphore] = {}
        done: list[int] = []

        async def one(row: Deletion) -> None:
            slot = per_se.setdefault(row.se, asyncio.Semaphore(self.per_se))
            async with everyone, slot:
                try:
                    await self.storage.delete(PfnRef(guid=row.guid, se=row.se, pfn=row.pfn))
                except StorageError as exc:
                    await self._failed(row, str(exc), exc.permanent)
                    return
                except Exception as exc:  # unexpected: counted as a failed attempt
                    await self._failed(row, f"{type(exc).__name__}: {exc}", False)
                    return
            done.append(row.id)

        await asyncio.gather(*(one(r) for r in due))
        await self.store.drop_deletions(done)
        self.deleted += len(done)
        if len(due) == self.batch:
            self._wake()  # more may be due: the next batch at once

    async def _failed(self, row: Deletion, error: str, permanent: bool) -> None:
        self.attempts_failed += 1
        attempts = row.attempts + 1
        give_up = permanent or attempts >= self.max_attempts
        wait = backoff(attempts, self.backoff_base, self.backoff_max)
        if give_up:
            log.warning("giving up deleting %s on %s: %s", row.pfn, row.se, error)
        await self.store.deletion_failed(row, error, time.time() + wait, give_up)

    async def recover(self, before: float) -> int:
        """HELD rows older than *before*: queued if no LFN points to their GUID (the removal
        committed; its process died before releasing them), else forgotten."""
        stale = await self.store.held_before(before, self.batch)
        stale = [r for r in stale if r.id not in self._holding]
        if not stale:
            return 0
        referenced = {g: await self.files.referenced(g) for g in {r.guid for r in stale}}
        registered = await self._registered(set(referenced))
        # to delete: the file has no LFN any more, or this replica was dropped from it
        gone = [r for r in stale if not referenced[r.guid] or (r.guid, r.pfn) not in registered]
        for guid in {r.guid for r in gone if not referenced[r.guid]}:
            await self.files.forget(guid)  # replica rows a removal cut short left behind
        await self.store.move_deletions([r.id for r in gone], HELD, QUEUED)
        kept = {r.id for r in stale} - {r.id for r in gone}
        await self.store.drop_deletions(sorted(kept))
        if gone:
            log.info("recovered %d PFNs of removals cut short", len(gone))
            self._wake()
        return len(gone)

    async def _registered(self, guids: set[str]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for guid in guids:
            found.update((guid, r.pfn) for r in await self.files.replicas(guid))
        return found
