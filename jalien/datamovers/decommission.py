"""Decommissioning an SE, and recovering from one that was lost: resumable state machines
kept in lifecycle.db, advanced by the ``se-decommission`` loop.

Draining (``seDecommission SE``)::

    READ_ONLY -> REPLICATING -> WAITING -> DROPPING -> DONE   (or STUCK: files an operator sees)

- READ_ONLY: from the moment the decommission exists the SE takes no new file (``read_only``:
  write placement and placement rules leave it out); it is still read from.
- REPLICATING: every replica on the SE, page by page: the placement rules matching the file's
  LFN are applied as if the SE were gone, and a file with no replica elsewhere gets one on an
  SE carrying the drained SE's first QoS tag (most free space first). Each file is decided
  once (a row in ``decommission_files``: OK, WAITING with its transfers, or STUCK with the
  reason), so a walk interrupted by a restart resumes where the rows end.
- WAITING: the transfers queued are followed until they end (DONE -> OK; failed or killed ->
  STUCK with the transfer's reason).
- DROPPING: each OK file's replica on the SE is unregistered and its PFN queued for physical
  removal, only if another replica exists then (never the last one: else STUCK).
- DONE, or STUCK when files are left: ``seDecommission -status SE`` lists them and
  ``seDecommission -retry SE`` decides them again.

Recovery of a lost SE (``seDecommission -lost SE``): READ_ONLY -> RECOVERING -> WAITING ->
DONE. A file whose only replica was there is reported as LOST (its row, and the lost-replica
report of the dark-data crawl); any other file's replica there is unregistered at once (the
bytes are gone) and the rules, applied without the SE, re-replicate it from the others.
"""

from __future__ import annotations

import logging
import time

import msgspec

from jalien.datamovers.darkdata import key_of
from jalien.datamovers.lifecycle_ports import CatalogueView, EnqueueDeletions, FileInfo, SeInfo
from jalien.datamovers.lifecycle_store import DecommissionFile, LifecycleStore
from jalien.datamovers.model import ACTIVE, PfnRef
from jalien.datamovers.model import DONE as T_DONE
from jalien.datamovers.rules import PlacementRules, Rule, TransferQueue
from jalien.loops import Loop

log = logging.getLogger("jalien.datamovers.decommission")

# machine states
READ_ONLY, REPLICATING, RECOVERING = "READ_ONLY", "REPLICATING", "RECOVERING"
WAITING, DROPPING, DONE, STUCK = "WAITING", "DROPPING", "DONE", "STUCK"
DRAIN, LOST_SE = "drain", "lost"
# file states
F_OK, F_WAITING, F_STUCK, F_LOST, F_DROPPED = "OK", "WAITING", "STUCK", "LOST", "DROPPED"
PAGE = 500


class DecommissionError(ValueError):
    """A decommission that cannot start or go on (the text says why); nothing changed."""


class Decommission(msgspec.Struct, kw_only=True):
    se: str
    mode: str = DRAIN
    state: str = READ_ONLY
    started: float = 0.0
    updated: float = 0.0
    walked: int = 0  # files decided by the walk
    qos: str = ""  # the tag a file with no other replica is copied to an SE carrying


class Progress(msgspec.Struct, kw_only=True):
    decommission: Decommission
    files: dict[str, int]  # file state -> count
    stuck: list[DecommissionFile]
    lost: list[DecommissionFile]


class Decommissioner:
    def __init__(
        self,
        catalogue: CatalogueView,
        store: LifecycleStore,
        rules: PlacementRules,
        transfers: TransferQueue,
        delete: EnqueueDeletions,
        *,
        page: int = PAGE,
    ) -> None:
        self.catalogue = catalogue
        self.store = store
        self.rules = rules
        self.transfers = transfers
        self.delete = delete
        self.page = page
        self.machines: dict[str, Decommission] = {}
        self.dropped = 0  # figures for monitoring (this process)
        self.transfers_queued = 0

    async def load(self) -> None:
        self.machines = {
            se: msgspec.msgpack.decode(doc, type=Decommission)
            for se, doc in await self.store.docs("decommissions")
        }

    async def follow(self) -> None:
        """The decommissions another process started (the same store): its SEs are
        read-only here too, and the process running the loop steps them. One known here
        keeps its object (the loop's process is the only one that moves it)."""
        for se, doc in await self.store.docs("decommissions"):
            if se not in self.machines:
                self.machines[se] = msgspec.msgpack.decode(doc, type=Decommission)

    def read_only(self) -> frozenset[str]:
        """The SEs that take no new file (upper case): those being (or once) decommissioned."""
        return frozenset(se.upper() for se in self.machines)

    async def _save(self, d: Decommission) -> None:
        d.updated = time.time()
        await self.store.put_doc("decommissions", d.se, msgspec.msgpack.encode(d))

    async def _se(self, name: str) -> SeInfo:
        for se in await self.catalogue.ses():
            if se.name.upper() == name.upper():
                return se
        raise DecommissionError(f"no such SE: {name}")

    # -- the admin's commands
    async def start(self, name: str, lost: bool = False) -> Decommission:
        """Starts (or shows, when it runs already) the decommission of an SE."""
        se = await self._se(name)
        mode = LOST_SE if lost else DRAIN
        current = self.machines.get(se.name)
        if current is not None:
            if current.mode != mode:
                raise DecommissionError(
                    f"{se.name} is being {'recovered' if current.mode == LOST_SE else 'drained'}"
                    f" already ({current.state})"
                )
            return current
        d = Decommission(se=se.name, mode=mode, started=time.time(), qos=(se.qos or [""])[0])
        await self._save(d)
        self.machines[se.name] = d
        log.info("%s of %s started: read-only from now on", mode, se.name)
        return d

    async def retry(self, name: str) -> Decommission:
        """The stuck files of a decommission decided again."""
        d = self.machines.get((await self._se(name)).name)
        if d is None:
            raise DecommissionError(f"{name} is not being decommissioned")
        await self.store.forget_files(d.se, F_STUCK)
        d.state = REPLICATING if d.mode == DRAIN else RECOVERING
        await self._save(d)
        return d

    async def progress(self, name: str, limit: int = 100) -> Progress:
        d = self.machines.get((await self._se(name)).name)
        if d is None:
            raise DecommissionError(f"{name} is not being decommissioned")
        return Progress(
            decommission=d,
            files=await self.store.file_counts(d.se),
            stuck=await self.store.files(d.se, F_STUCK, limit),
            lost=await self.store.files(d.se, F_LOST, limit),
        )

    def all(self) -> list[Decommission]:
        return [self.machines[se] for se in sorted(self.machines)]

    # -- the machine
    async def advance(self, d: Decommission) -> bool:
        """One state's work; whether the state changed (the caller may go on at once)."""
        before = d.state
        if d.state == READ_ONLY:
            d.state = REPLICATING if d.mode == DRAIN else RECOVERING
        elif d.state in (REPLICATING, RECOVERING):
            await self._walk(d)
            d.state = WAITING
        elif d.state == WAITING:
            if await self._follow(d):
                d.state = DROPPING if d.mode == DRAIN else DONE
        elif d.state == DROPPING:
            await self._drop(d)
            d.state = STUCK if (await self.store.file_counts(d.se)).get(F_STUCK) else DONE
        if d.state == DONE and before != DONE:
            stuck = (await self.store.file_counts(d.se)).get(F_STUCK, 0)
            if stuck:
                d.state = STUCK
        if d.state != before:
            await self._save(d)
            log.info("decommission of %s: %s -> %s", d.se, before, d.state)
            return True
        return False

    async def _walk(self, d: Decommission) -> None:
        ses = await self.catalogue.ses()
        batch: list[PfnRef] = []
        async for page in self.catalogue.replicas_on(d.se):
            batch.extend(page)
            while len(batch) >= self.page:
                await self._decide(d, batch[: self.page], ses)
                batch = batch[self.page :]
        if batch:
            await self._decide(d, batch, ses)

    async def _decide(self, d: Decommission, refs: list[PfnRef], ses: list[SeInfo]) -> None:
        guids = sorted({r.guid for r in refs})
        done = await self.store.decided(d.se, guids)
        rows = []
        for guid in guids:
            if guid not in done:
                rows.append(await self._decide_one(d, guid, ses))
        await self.store.put_files(d.se, rows)
        d.walked += len(rows)
        await self._save(d)

    async def _decide_one(self, d: Decommission, guid: str, ses: list[SeInfo]) -> DecommissionFile:
        lfns = await self.catalogue.lfns_of(guid)
        file = await self.catalogue.file(lfns[0]) if lfns else None
        if file is None:  # an orphan replica: nothing to keep
            return DecommissionFile(guid=guid, lfn="", state=F_OK, reason="no LFN")
        here = d.se.upper()
        others = [r for r in file.replicas if r.se.upper() != here]
        if d.mode == LOST_SE:
            if not others:  # reported: -status here, seCheck -report with the dark data
                here_refs = [(key_of(r.pfn), guid) for r in file.replicas]
                await self.store.add_lost(d.se, here_refs, first=False)
                return DecommissionFile(
                    guid=guid, lfn=file.lfn, state=F_LOST, reason=f"its only replica was on {d.se}"
                )
            await self.catalogue.drop_replica(guid, d.se)  # the bytes are gone with the SE
            file = msgspec.structs.replace(file, replicas=others)
        rules = list(self.rules.matching(file.lfn))
        if not others:  # at least one replica elsewhere, like the drained SE's
            rules.append(Rule(name="(keep a replica)", pattern="*", copies=1, qos=d.qos))
        return await self._apply(d, file, rules, ses)

    async def _apply(
        self, d: Decommission, file: FileInfo, rules: list[Rule], ses: list[SeInfo]
    ) -> DecommissionFile:
        tids: list[int] = []
        problems: list[str] = []
        for rule in rules:
            try:
                verdict, queued = await self.rules.apply(rule, file, ses, excluded=(d.se,))
            except Exception as exc:
                problems.append(f"{rule.name}: {exc}")
                continue
            tids.extend(queued)
            if verdict == "unsatisfiable":
                problems.append(f"{rule.name}: no SE can take it")
        self.transfers_queued += len(tids)
        if problems:
            return DecommissionFile(
                guid=file.guid,
                lfn=file.lfn,
                state=F_STUCK,
                transfers=tids,
                reason="; ".join(problems)[:500],
            )
        state = F_WAITING if tids else F_OK
        return DecommissionFile(guid=file.guid, lfn=file.lfn, state=state, transfers=tids)

    async def _follow(self, d: Decommission) -> bool:
        """The transfers of waiting files; True when none waits any more."""
        waiting = await self.store.files(d.se, F_WAITING)
        changed = []
        left = 0
        for row in waiting:
            states = []
            reason = ""
            for tid in row.transfers:
                t = await self.transfers.get(tid)
                states.append(t.state if t is not None else "GONE")
                if t is not None and t.state not in ACTIVE and t.state != T_DONE:
                    reason = f"transfer {tid} {t.state}: {t.reason}"
            if any(s in ACTIVE for s in states):
                left += 1
                continue
            if reason or "GONE" in states:
                changed.append(msgspec.structs.replace(row, state=F_STUCK, reason=reason or "gone"))
            else:
                changed.append(msgspec.structs.replace(row, state=F_OK))
        if changed:
            await self.store.put_files(d.se, changed)
        return left == 0

    async def _drop(self, d: Decommission) -> None:
        here = d.se.upper()
        while True:
            rows = await self.store.files(d.se, F_OK, self.page)
            if not rows:
                return
            done: list[DecommissionFile] = []
            gone: list[PfnRef] = []
            for row in rows:
                replicas = await self.catalogue.replicas(row.guid)
                mine = [r for r in replicas if r.se.upper() == here]
                if row.lfn and not any(r.se.upper() != here for r in replicas):
                    done.append(
                        msgspec.structs.replace(row, state=F_STUCK, reason="no other replica")
                    )
                    continue
                if mine:
                    await self.catalogue.drop_replica(row.guid, d.se)
                    gone.extend(mine)
                done.append(msgspec.structs.replace(row, state=F_DROPPED))
            if gone:
                await self.delete(gone)
                self.dropped += len(gone)
            await self.store.put_files(d.se, done)

    async def step(self) -> None:
        for d in self.all():
            for _ in range(6):  # READ_ONLY ... DONE at most
                if d.state in (DONE, STUCK) or not await self.advance(d):
                    break

    def loop(self, interval: float) -> Loop:
        return Loop("se-decommission", self.step, interval, jitter=0.1, logger=log)

    def figures(self) -> dict[str, int]:
        by_state: dict[str, int] = {}
        for d in self.machines.values():
            by_state[d.state] = by_state.get(d.state, 0) + 1
        return {
            "active": sum(n for s, n in by_state.items() if s not in (DONE,)),
            "done": by_state.get(DONE, 0),
            "stuck": by_state.get(STUCK, 0),
            "replicas_dropped": self.dropped,
            "transfers_queued": self.transfers_queued,
        }
