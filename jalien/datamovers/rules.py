"""Placement rules: declarative "files like this have N replicas on SEs like that".

A rule is an LFN pattern (a glob: ``*`` and ``?`` match any characters, '/' too), a number
of replicas, and the SEs that count: those carrying a QoS tag (``qos``) and, when given,
named in ``ses``. Raw data to one T1 disk SE besides its first copy::

    addRule raw-t1 '/alice/data/*/raw/*' 1 -qos t1disk

A file under a rule is *satisfied* when it has that many replicas on SEs that count; the
missing ones are new transfers (the transfer queue of this service) to the SEs that count,
do not hold the file, are not read-only (being decommissioned) and have room for it, most
free space first (an SE stating no capacity last). A rule is checked when a file is
committed (``on_commit``, the hook the role wires into ``commit``) and by the periodic
checker (``loop``: ``placement-rules``), which walks each rule's fixed prefix (the part of
its pattern before the first wildcard) and repairs what is missing.

A rule that could never be satisfied (fewer SEs that count than replicas asked) is refused
when added (``RuleError``; nothing changes); a file that cannot be satisfied at the moment
(no room, SEs read-only) is counted as such in the rule's state and retried at the next check.
Transfers queued for a file are remembered (in memory) so that a file waiting for its copy
is not sent to a second SE meanwhile; after a restart, the transfer queue's own refusal of a
second active transfer of the same GUID to the same SE and the deterministic choice of SE
keep the checker from doubling copies.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Callable, Collection
from typing import Protocol

import msgspec

from jalien.datamovers.lifecycle_ports import CatalogueView, FileInfo, SeInfo
from jalien.datamovers.lifecycle_store import LifecycleStore
from jalien.datamovers.model import ACTIVE, Transfer
from jalien.loops import Loop

log = logging.getLogger("jalien.datamovers.rules")
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_COPIES = 16


class RuleError(ValueError):
    """A rule that cannot be added (the text says why)."""


class Rule(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    pattern: str  # LFN glob
    copies: int  # replicas wanted on SEs that count
    qos: str = ""  # the QoS tag an SE carries to count ("" any)
    ses: list[str] = []  # SE names that count ([]: any carrying the tag)
    created: float = 0.0

    def matches(self, lfn: str) -> bool:
        return fnmatch.fnmatchcase(lfn, self.pattern)

    def counts(self, se: SeInfo) -> bool:
        if self.qos and self.qos.lower() not in {q.lower() for q in se.qos}:
            return False
        return not self.ses or se.name.upper() in {s.upper() for s in self.ses}

    @property
    def prefix(self) -> str:
        """The directory every matching LFN is under (the pattern before its first wildcard)."""
        head = re.split(r"[*?\[]", self.pattern, maxsplit=1)[0]
        return head.rsplit("/", 1)[0] + "/" if "/" in head else "/"


class RuleState(msgspec.Struct, kw_only=True):
    """What the last check of a rule found."""

    checked: float = 0.0  # when (seconds since the epoch); 0: never
    files: int = 0  # files matching
    satisfied: int = 0
    queued: int = 0  # files with transfers queued for them
    unsatisfiable: int = 0  # files no SE can take now (full, read-only)
    transfers: int = 0  # transfers this process queued for the rule
    error: str = ""


class RuleRecord(msgspec.Struct, kw_only=True):
    rule: Rule
    state: RuleState = msgspec.field(default_factory=RuleState)


class TransferQueue(Protocol):
    """The transfer queue as rules and decommissioning use it."""

    async def submit(self, lfn: str, se: str, *, user: str = "admin", attempts: int = 5) -> int: ...

    async def get(self, transfer_id: int) -> Transfer | None: ...


def choose(
    rule: Rule,
    ses: list[SeInfo],
    holders: Collection[str],
    size: int,
    excluded: Collection[str] = (),
) -> tuple[list[str], int]:
    """(SEs to copy a file to, replicas still missing after them) for *rule*, given the
    SEs that already hold it (*holders*, upper case) and those that take no new file."""
    counting = [s for s in ses if rule.counts(s)]
    have = sum(1 for s in counting if s.name.upper() in holders)
    missing = max(rule.copies - have, 0)
    out = {h.upper() for h in holders} | {e.upper() for e in excluded}
    candidates = [
        s
        for s in counting
        if s.name.upper() not in out and (s.capacity <= 0 or s.used + max(size, 0) <= s.capacity)
    ]
    candidates.sort(key=lambda s: (s.free < 0, -s.free, s.name))
    chosen = [s.name for s in candidates[:missing]]
    return chosen, missing - len(chosen)


class PlacementRules:
    def __init__(
        self,
        catalogue: CatalogueView,
        store: LifecycleStore,
        transfers: TransferQueue,
        *,
        read_only: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self.catalogue = catalogue
        self.store = store
        self.transfers = transfers
        self.read_only = read_only  # SEs taking no new file (decommissioning), upper case
        self.records: dict[str, RuleRecord] = {}
        self._pending: dict[tuple[str, str], int] = {}  # (guid, SE) -> transfer id
        self.transfers_queued = 0  # figures for monitoring (this process)
        self.checks = 0

    async def load(self) -> None:
        self.records = {
            name: msgspec.msgpack.decode(doc, type=RuleRecord)
            for name, doc in await self.store.docs("rules")
        }

    async def follow(self) -> None:
        """The rules another process added or removed (the same store): new ones taken,
        removed ones dropped; a rule known here keeps its object (this process's figures)."""
        stored = dict(await self.store.docs("rules"))
        for name in set(self.records) - set(stored):
            del self.records[name]
        for name, doc in stored.items():
            if name not in self.records:
                self.records[name] = msgspec.msgpack.decode(doc, type=RuleRecord)

    async def _save(self, record: RuleRecord) -> None:
        await self.store.put_doc("rules", record.rule.name, msgspec.msgpack.encode(record))

    # -- the admin's commands
    async def add(self, rule: Rule) -> Rule:
        """A new rule (RuleError, nothing changed, when it is malformed, exists, or could
        never be satisfied by the SEs registered that take new files)."""
        if not NAME.match(rule.name):
            raise RuleError(f"bad rule name {rule.name!r} (letters, digits, _ . : -)")
        if rule.name in self.records:
            raise RuleError(f"a rule named {rule.name} exists (removeRule it first)")
        if not rule.pattern.startswith("/"):
            raise RuleError(f"the LFN pattern must be absolute: {rule.pattern!r}")
        if not 1 <= rule.copies <= MAX_COPIES:
            raise RuleError(f"the number of replicas must be 1..{MAX_COPIES}, not {rule.copies}")
        ses = await self.catalogue.ses()
        known = {s.name.upper(): s.name for s in ses}
        unknown = [s for s in rule.ses if s.upper() not in known]
        if unknown:
            raise RuleError(f"no such SE: {', '.join(unknown)}")
        closed = {s.upper() for s in self.read_only()}
        counting = [s.name for s in ses if rule.counts(s) and s.name.upper() not in closed]
        if len(counting) < rule.copies:
            what = f"QoS tag {rule.qos!r}" if rule.qos else "any tag"
            among = f" among {', '.join(rule.ses)}" if rule.ses else ""
            draining = [s.name for s in ses if rule.counts(s) and s.name.upper() in closed]
            raise RuleError(
                f"rule {rule.name} cannot be satisfied: {rule.copies} replicas asked, "
                f"{len(counting)} SE(s) with {what}{among}"
                + (f" ({', '.join(counting)})" if counting else "")
                + (f"; being decommissioned: {', '.join(draining)}" if draining else "")
            )
        rule = msgspec.structs.replace(
            rule, ses=[known[s.upper()] for s in rule.ses], created=time.time()
        )
        record = RuleRecord(rule=rule)
        await self._save(record)
        self.records[rule.name] = record
        log.info("placement rule %s added: %s", rule.name, rule.pattern)
        return rule

    async def remove(self, name: str) -> Rule:
        record = self.records.get(name)
        if record is None:
            raise RuleError(f"no such rule: {name}")
        await self.store.drop_doc("rules", name)
        self.records.pop(name, None)  # follow() may have dropped it meanwhile
        return record.rule

    def listing(self) -> list[RuleRecord]:
        return [self.records[n] for n in sorted(self.records)]

    def matching(self, lfn: str) -> list[Rule]:
        return [r.rule for r in self.listing() if r.rule.matches(lfn)]

    # -- evaluation
    async def _busy(self, guid: str, se: str) -> bool:
        """Whether a transfer this process queued for (guid, SE) is still active."""
        tid = self._pending.get((guid, se.upper()))
        if tid is None:
            return False
        transfer = await self.transfers.get(tid)
        if transfer is not None and transfer.state in ACTIVE:
            return True
        self._pending.pop((guid, se.upper()), None)
        return False

    async def apply(
        self,
        rule: Rule,
        file: FileInfo,
        ses: list[SeInfo],
        excluded: Collection[str] = (),
    ) -> tuple[str, list[int]]:
        """Queues what *file* lacks under *rule*; returns its verdict (satisfied, queued,
        unsatisfiable) and the transfers queued now. *excluded*: SEs that do not count
        and take nothing (an SE being drained)."""
        gone = {e.upper() for e in excluded}
        holders = {r.se.upper() for r in file.replicas if r.se.upper() not in gone}
        for key in [k for k in self._pending if k[0] == file.guid]:
            if await self._busy(file.guid, key[1]):
                holders.add(key[1])  # on its way: counts as held
        pending = any(k[0] == file.guid for k in self._pending)
        taken = {*gone, *(s.upper() for s in self.read_only())}
        chosen, short = choose(rule, ses, holders, file.size, taken)
        queued = []
        for se in chosen:
            tid = await self.transfers.submit(file.lfn, se)
            self._pending[(file.guid, se.upper())] = tid
            queued.append(tid)
        self.transfers_queued += len(queued)
        if short:
            return "unsatisfiable", queued
        if queued or pending:
            return "queued", queued
        return "satisfied", queued

    async def on_commit(self, lfn: str) -> list[int]:
        """The hook of commit: the rules matching a new file's LFN, applied at once."""
        rules = self.matching(lfn)
        if not rules:
            return []
        file = await self.catalogue.file(lfn)
        if file is None:
            return []
        ses = await self.catalogue.ses()
        queued: list[int] = []
        for rule in rules:
            try:
                _, tids = await self.apply(rule, file, ses)
            except Exception as exc:  # the commit itself succeeded: the checker repairs
                log.warning("rule %s at the commit of %s: %s", rule.name, lfn, exc)
                continue
            queued.extend(tids)
            record = self.records.get(rule.name)
            if record is not None:
                record.state.transfers += len(tids)
        return queued

    async def check(self, name: str) -> RuleState:
        """Walks the files of one rule and repairs what is missing; its state."""
        record = self.records[name]
        rule = record.rule
        state = RuleState(transfers=record.state.transfers)
        ses = await self.catalogue.ses()
        try:
            async for page in self.catalogue.files_under(rule.prefix):
                for file in page:
                    if not rule.matches(file.lfn):
                        continue
                    state.files += 1
                    verdict, tids = await self.apply(rule, file, ses)
                    state.transfers += len(tids)
                    if verdict == "satisfied":
                        state.satisfied += 1
                    elif verdict == "queued":
                        state.queued += 1
                    else:
                        state.unsatisfiable += 1
        except Exception as exc:
            state.error = str(exc)[:300]
            raise
        finally:
            state.checked = time.time()
            if name in self.records:
                self.records[name].state = state
                await self._save(self.records[name])
        return state

    async def step(self) -> None:
        self.checks += 1
        for name in list(self.records):
            await self.check(name)

    def loop(self, interval: float) -> Loop:
        return Loop("placement-rules", self.step, interval, jitter=0.1, logger=log)

    def figures(self) -> dict[str, int]:
        states = [r.state for r in self.records.values()]
        return {
            "rules": len(states),
            "files": sum(s.files for s in states),
            "satisfied": sum(s.satisfied for s in states),
            "queued": sum(s.queued for s in states),
            "unsatisfiable": sum(s.unsatisfiable for s in states),
            "transfers_queued": self.transfers_queued,
            "checks": self.checks,
        }
