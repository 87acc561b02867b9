"""Transfers (JAliEn's ``mirror``): a persistent queue of "this GUID to that SE" and a pool
of workers, at most ``workers`` copies at once and ``per_se`` per destination SE.

States (JAliEn's): WAITING -> TRANSFERRING -> DONE, or back to WAITING after a failed
attempt (its ``reason`` kept, the next one after a backoff) until FAILED when ``-try``
attempts failed; KILLED when a user cancels it. A transfer's steps are each idempotent, so
that a jcentral killed anywhere and restarted (TRANSFERRING rows are WAITING again at its
first step) neither loses a transfer nor registers a replica twice:
1. the GUID already has a replica on the destination: DONE (a previous attempt's commit);
2. copy a replica of another SE to the destination PFN (AliEn's layout: the same path for
   the same GUID on that SE): the storage side counts a target that already holds exactly
   this file (size, md5) as copied;
3. register the replica (the catalogue ignores a replica it has: once only);
4. ``-r SE``: the source replica on that SE is unregistered and its PFN queued for removal;
5. DONE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Collection
from typing import Protocol

import msgspec

from jalien.auth.policy import Caller, is_admin
from jalien.datamovers.deletion import DeletionService
from jalien.datamovers.model import (
    DONE,
    FAILED_T,
    KILLED,
    TRANSFERRING,
    WAITING,
    PfnRef,
    Transfer,
    TransferCounts,
    backoff,
)
from jalien.datamovers.ports import FileRecord, Files, Storage, StorageError
from jalien.datamovers.store import AlreadyQueued, DataMoverStore
from jalien.loops import Loop
from jalien.wire.errors import (
    EXIT_EXISTS,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    RequestError,
)

log = logging.getLogger("jalien.datamovers.transfer")


class Requester(Caller, Protocol):
    """Who asks (a session's identity): its login and what the policy says of its kind."""

    @property
    def login(self) -> str: ...


class Queued(msgspec.Struct, kw_only=True):
    """What ``mirror`` did with one LFN: a transfer id, or why there is none."""

    lfn: str
    id: int = 0
    error: str = ""


class TransferService:
    def __init__(
        self,
        store: DataMoverStore,
        files: Files,
        storage: Storage,
        deletions: DeletionService,
        *,
        workers: int = 8,
        per_se: int = 2,
        backoff_base: float = 10.0,
        backoff_max: float = 600.0,
        owner: str = "",
        lease: float = 300.0,
    ) -> None:
        self.store = store
        self.files = files
        self.storage = storage
        self.deletions = deletions
        self.workers = workers
        self.per_se = per_se
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.done = 0
        self.failed_attempts = 0
        self.bytes_moved = 0
        # transfers that entered each state in this process (the metrics' jalien_transfers)
        self.entered: dict[str, int] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._per_se: dict[str, int] = {}
        self._recovered = False
        # who runs the copies it marks TRANSFERRING (this jcentral, the same across restarts)
        # and how long a copy's row stays its own without a renewal (several jcentrals)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = lease
        self._renewed = 0.0
        self._loop: Loop | None = None
        # SEs taking no new file, upper case (being decommissioned: datamovers.lifecycle)
        self.read_only: Callable[[], Collection[str]] = frozenset

    # -- what users and other services call
    async def mirror(
        self,
        caller: Requester,
        lfn: str,
        se: str,
        *,
        attempts: int = 5,
        remove_source: str = "",
    ) -> list[Queued]:
        """Queue a copy to *se* of the file at *lfn*, or of each file of a directory or
        collection. RequestError (nothing queued) for an unknown SE, an SE being
        decommissioned, a missing LFN, a file the caller does not own, or a single file that
        the SE already holds."""
        user, admin = caller.login, is_admin(caller)
        if attempts < 1:
            raise RequestError("-try wants a number of attempts >= 1", EXIT_INVALID)
        destination = await self._destination(se)
        source_se = await self._se(remove_source) if remove_source else ""
        if source_se and source_se == destination:
            raise RequestError("-r names the destination SE itself", EXIT_INVALID)
        record = await self.files.file(lfn)
        if record is not None:
            records = [record]
        else:
            members = await self.files.files_under(lfn)
            if not members:
                raise RequestError(f"{lfn}: No such file or directory", EXIT_NOT_FOUND)
            found = [await self.files.file(m) for m in members]
            records = [r for r in found if r is not None]
        if not admin:
            foreign = [r.lfn for r in records if r.owner != user]
            if foreign:
                raise RequestError(
                    f"Permission denied: {user} does not own {foreign[0]}", EXIT_PERMISSION
                )
        results = [await self._queue(r, destination, user, attempts, source_se) for r in records]
        if len(results) == 1 and results[0].error:
            code = EXIT_EXISTS if "already" in results[0].error else EXIT_INVALID
            raise RequestError(f"{results[0].lfn}: {results[0].error}", code)
        if any(r.id for r in results):
            self._wake()
        return results

    async def submit(self, lfn: str, se: str, *, user: str = "admin", attempts: int = 5) -> int:
        """A service's transfer (placement rules, decommissioning): the id of the queued
        (or already queued) transfer of the file at *lfn* to *se*, without an owner check.
        RequestError when the SE or the file is unknown, the SE is being decommissioned or
        already holds it."""
        destination = await self._destination(se)
        record = await self.files.file(lfn)
        if record is None:
            raise RequestError(f"{lfn}: No such file", EXIT_NOT_FOUND)
        queued = await self._queue(record, destination, user, attempts, "")
        if not queued.id:
            raise RequestError(f"{lfn}: {queued.error}", EXIT_EXISTS)
        self._wake()
        return queued.id

    async def delete_mirror(self, caller: Requester, lfn: str, se: str) -> list[PfnRef]:
        """JAliEn's deleteMirror: the file's replica on *se* leaves the catalogue and its
        PFN is queued for removal from the SE. Not the last replica (that is ``rm``)."""
        user, admin = caller.login, is_admin(caller)
        name = await self._se(se)
        record = await self.files.file(lfn)
        if record is None:
            raise RequestError(f"{lfn}: No such file", EXIT_NOT_FOUND)
        if not admin and record.owner != user:
            raise RequestError(f"Permission denied: {user} does not own {lfn}", EXIT_PERMISSION)
        there = [r for r in record.replicas if r.se == name]
        if not there:
            raise RequestError(f"{lfn} has no replica on {name}", EXIT_NOT_FOUND)
        if len({r.se for r in record.replicas}) == 1:
            raise RequestError(f"{lfn}: {name} holds its last replica (use rm)", EXIT_INVALID)
        held = await self.deletions.hold(there)
        try:
            dropped = await self.files.drop_replica(record.guid, name)
        except BaseException:
            self.deletions.abandon(held)
            raise
        await self.deletions.release(held)
        return dropped

    async def get(self, transfer_id: int) -> Transfer | None:
        return await self.store.get_transfer(transfer_id)

    async def listing(
        self,
        *,
        state: str = "",
        user: str = "",
        transfer_id: int = 0,
        destination: str = "",
        limit: int = 0,
        descending: bool = False,
    ) -> list[Transfer]:
        return await self.store.list_transfers(
            state=state.upper(), user=user, transfer_id=transfer_id, destination=destination,
            limit=limit, descending=descending,
        )  # fmt: skip

    async def kill(self, caller: Requester, transfer_id: int) -> Transfer:
        """Cancel a transfer that has not ended (its owner or an admin)."""
        user, admin = caller.login, is_admin(caller)
        t = await self.store.get_transfer(transfer_id)
        if t is None:
            raise RequestError(f"no transfer {transfer_id}", EXIT_NOT_FOUND)
        if not admin and t.user != user:
            raise RequestError(f"Permission denied: transfer {t.id} is {t.user}'s", EXIT_PERMISSION)
        if t.state not in (WAITING, TRANSFERRING) or not await self._move(t, KILLED):
            raise RequestError(f"transfer {t.id} is {t.state}: nothing to kill", EXIT_INVALID)
        task = self._running.get(t.id)
        if task is not None:
            task.cancel()
        return t

    async def counts(self) -> TransferCounts:
        return TransferCounts(
            by_state=await self.store.transfer_counts(),
            running=len(self._running),
            done=self.done,
            failed_attempts=self.failed_attempts,
            bytes_moved=self.bytes_moved,
        )

    async def _se(self, name: str) -> str:
        known = {s.upper(): s for s in await self.files.se_names()}
        found = known.get(name.upper())
        if found is None:
            raise RequestError(f"unknown SE {name!r} (see listSEs)", EXIT_NOT_FOUND)
        return found

    async def _destination(self, name: str) -> str:
        """The SE *name* as a transfer's destination: known, and taking new files."""
        found = await self._se(name)
        if found.upper() in {s.upper() for s in self.read_only()}:
            raise RequestError(
                f"{found} is being decommissioned: it takes no new file",
                EXIT_INVALID,
            )
        return found

    async def _queue(
        self, record: FileRecord, destination: str, user: str, attempts: int, remove: str
    ) -> Queued:
        if any(r.se == destination for r in record.replicas):
            return Queued(lfn=record.lfn, error=f"file already exists on SE {destination}")
        if not record.replicas:
            return Queued(lfn=record.lfn, error="the file has no replica to copy")
        if remove and not any(r.se == remove for r in record.replicas):
            return Queued(lfn=record.lfn, error=f"no replica on {remove} to remove")
        t = Transfer(
            id=0, lfn=record.lfn, guid=record.guid, size=record.size, md5=record.md5,
            user=user, destination=destination, state=WAITING, max_attempts=attempts,
            remove_source=remove,
        )  # fmt: skip
        try:
            made = await self.store.add_transfer(t)
        except AlreadyQueued as exc:
            return Queued(lfn=record.lfn, id=exc.id)
        self.entered[WAITING] = self.entered.get(WAITING, 0) + 1
        return Queued(lfn=record.lfn, id=made)

    async def _move(self, t: Transfer, new: str, **fields: object) -> bool:
        """A state change of *t* (compare-and-set), counted by state for monitoring."""
        old = t.state
        moved = await self.store.move_transfer(t, new, **fields)
        if moved and new != old:
            self.entered[new] = self.entered.get(new, 0) + 1
        return moved

    # -- the workers
    def loop(self, interval: float) -> Loop:
        self._loop = Loop("transfers", self.step, interval, logger=log, first=0.0)
        return self._loop

    def _wake(self) -> None:
        if self._loop is not None:
            self._loop.run_now()

    async def step(self) -> None:
        """Start what is due, within the limits (copies run as tasks beyond the step)."""
        now = time.time()
        if not self._recovered:  # this jcentral's copies that a stop or a kill cut short
            again = await self.store.recover_transfers(owner=self.owner)
            if again:
                log.info("%d transfers cut short by a restart wait again", again)
            self._recovered = True
        if now - self._renewed > self.lease / 4:  # the leases: ours renewed, the dead's taken
            await self.store.renew_lease(list(self._running), self.owner)
            again = await self.store.recover_transfers(stale_before=now - self.lease)
            if again:
                log.info("%d transfers of a jcentral that stopped wait again", again)
            self._renewed = now
        free = self.workers - len(self._running)
        if free <= 0:
            return
        for t in await self.store.due_transfers(time.time(), self.workers * 8):
            if free <= 0:
                break
            if t.id in self._running or self._per_se.get(t.destination, 0) >= self.per_se:
                continue
            if not await self._move(t, TRANSFERRING, attempts=t.attempts + 1, owner=self.owner):
                continue  # killed meanwhile
            free -= 1
            self._per_se[t.destination] = self._per_se.get(t.destination, 0) + 1
            task = asyncio.ensure_future(self._attempt(t))
            self._running[t.id] = task
            task.add_done_callback(self._ended_callback(t))

    def _ended_callback(self, t: Transfer) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._ended(t)

    def _ended(self, t: Transfer) -> None:
        self._running.pop(t.id, None)
        left = self._per_se.get(t.destination, 1) - 1
        if left > 0:
            self._per_se[t.destination] = left
        else:
            self._per_se.pop(t.destination, None)
        self._wake()

    async def close(self) -> None:
        """Stop the copies in progress (their rows stay TRANSFERRING: WAITING at the next
        start)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _attempt(self, t: Transfer) -> None:
        try:
            await self._copy(t)
        except asyncio.CancelledError:
            raise
        except StorageError as exc:
            await self._failed(t, str(exc), exc.permanent)
        except Exception as exc:  # a bug or an unexpected answer: counted, retried
            log.exception("transfer %d: %s", t.id, exc)
            await self._failed(t, f"{type(exc).__name__}: {exc}", False)

    async def _copy(self, t: Transfer) -> None:
        replicas = await self.files.replicas(t.guid)
        if any(r.se == t.destination for r in replicas):
            await self._finish(t, "")
            return
        if not await self.files.referenced(t.guid):
            await self._end(t, FAILED_T, "the file was removed")
            return
        sources = [r for r in replicas if r.se != t.destination]
        if not sources:
            await self._end(t, FAILED_T, "no replica left to copy")
            return
        pfn = await self.storage.destination(t.destination, t.guid)
        target = PfnRef(guid=t.guid, se=t.destination, pfn=pfn)
        errors = []
        fresh = not t.pfn  # no attempt got as far as the target: nothing can be there
        for source in sources:  # the catalogue's order; the next replica when one fails
            await self._move(t, TRANSFERRING, source=source.se, pfn=pfn)
            try:
                await self.storage.copy(source, target, t.size, t.md5, fresh)
            except StorageError as exc:
                errors.append(f"from {source.se}: {exc}")
                continue
            break
        else:
            raise StorageError("; ".join(errors), permanent=False)
        self.bytes_moved += max(t.size, 0)
        if not await self.files.add_replica(target):
            await self.deletions.enqueue([target])  # the file went meanwhile: no orphan
            await self._end(t, FAILED_T, "the file was removed during the transfer")
            return
        await self._finish(t, pfn)

    async def _finish(self, t: Transfer, pfn: str) -> None:
        if t.remove_source:
            replicas = [r for r in await self.files.replicas(t.guid) if r.se == t.remove_source]
            if replicas:
                held = await self.deletions.hold(replicas)
                try:
                    await self.files.drop_replica(t.guid, t.remove_source)
                except BaseException:
                    self.deletions.abandon(held)  # committed or not: the recovery decides
                    raise
                await self.deletions.release(held)
        fields = {"pfn": pfn} if pfn else {}
        if await self._move(t, DONE, reason="", **fields):
            self.done += 1

    async def _end(self, t: Transfer, state: str, reason: str) -> None:
        await self._move(t, state, reason=reason)

    async def _failed(self, t: Transfer, reason: str, permanent: bool) -> None:
        self.failed_attempts += 1
        log.info("transfer %d to %s, attempt %d: %s", t.id, t.destination, t.attempts, reason)
        if permanent or t.attempts >= t.max_attempts:
            if await self._move(t, FAILED_T, reason=reason[:500]) and t.pfn:
                # what an attempt may have left at the target goes (never a registered
                # replica: the deletion step checks the catalogue first)
                await self.deletions.enqueue([PfnRef(guid=t.guid, se=t.destination, pfn=t.pfn)])
            return
        wait = backoff(t.attempts, self.backoff_base, self.backoff_max)
        await self._move(t, WAITING, reason=reason[:500], next_try=time.time() + wait)
