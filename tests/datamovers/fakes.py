"""In-memory catalogue and SEs for the data-lifecycle tests (placement rules, decommission,
dark data): the Protocols of jalien/datamovers/lifecycle_ports.py, without I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from jalien.datamovers.darkdata import key_of
from jalien.datamovers.lifecycle_ports import FileInfo, SeInfo
from jalien.datamovers.model import DONE, FAILED_T, WAITING, PfnRef, Transfer


class FakeCatalogue:
    def __init__(self, ses: list[SeInfo]) -> None:
        self.se_list = ses
        self.files: dict[str, FileInfo] = {}  # lfn -> file
        self.page = 3  # small pages: paging is exercised

    def add(self, lfn: str, guid: str, *ses: str, size: int = 10) -> FileInfo:
        by = {s.name: s for s in self.se_list}
        reps = [PfnRef(guid=guid, se=s, pfn=f"{by[s].url}/00/00000/{guid}") for s in ses]
        info = FileInfo(lfn=lfn, guid=guid, size=size, md5="0" * 32, owner="jdoe", replicas=reps)
        self.files[lfn] = info
        return info

    async def ses(self) -> list[SeInfo]:
        return list(self.se_list)

    async def replicas_on(self, se: str) -> AsyncIterator[list[PfnRef]]:
        refs = [r for f in self.files.values() for r in f.replicas if r.se == se]
        for i in range(0, len(refs), self.page):
            yield refs[i : i + self.page]

    async def replicas(self, guid: str) -> list[PfnRef]:
        return [r for f in self.files.values() if f.guid == guid for r in f.replicas]

    async def lfns_of(self, guid: str) -> list[str]:
        return [f.lfn for f in self.files.values() if f.guid == guid]

    async def file(self, lfn: str) -> FileInfo | None:
        return self.files.get(lfn)

    async def files_under(self, directory: str) -> AsyncIterator[list[FileInfo]]:
        found = [f for lfn, f in sorted(self.files.items()) if lfn.startswith(directory)]
        for i in range(0, len(found), self.page):
            yield found[i : i + self.page]

    async def drop_replica(self, guid: str, se: str) -> int:
        n = 0
        for f in self.files.values():
            if f.guid == guid:
                keep = [r for r in f.replicas if r.se != se]
                n += len(f.replicas) - len(keep)
                f.replicas = keep
        return n


class FakeSEs:
    """What each SE holds (PFN paths), listed in an unsorted order."""

    def __init__(self) -> None:
        self.held: dict[str, set[str]] = {}
        self.during_listing: list = []  # callables run while the listing is taken

    def put(self, se: str, pfn: str) -> None:
        self.held.setdefault(se, set()).add(key_of(pfn))

    async def listing(self, se: str, url: str) -> AsyncIterator[list[str]]:
        for action in self.during_listing:
            action()
        paths = sorted(self.held.get(se, ()), reverse=True)
        for i in range(0, len(paths), 2):
            yield paths[i : i + 2]


class Deletions:
    def __init__(self) -> None:
        self.queued: list[PfnRef] = []

    async def __call__(self, refs: Sequence[PfnRef]) -> list[int]:
        self.queued.extend(refs)
        return list(range(len(refs)))


class FakeTransfers:
    """A transfer queue: submit() queues, finish() copies (adds the replica) or fails them."""

    def __init__(self, catalogue: FakeCatalogue) -> None:
        self.catalogue = catalogue
        self.queue: dict[int, Transfer] = {}

    async def submit(self, lfn: str, se: str, *, user: str = "admin", attempts: int = 5) -> int:
        info = self.catalogue.files[lfn]
        for t in self.queue.values():
            if t.guid == info.guid and t.destination == se and t.state == WAITING:
                return t.id
        tid = len(self.queue) + 1
        self.queue[tid] = Transfer(
            id=tid, lfn=lfn, guid=info.guid, size=info.size, md5=info.md5, user=user,
            destination=se, state=WAITING,
        )  # fmt: skip
        return tid

    async def get(self, transfer_id: int) -> Transfer | None:
        return self.queue.get(transfer_id)

    def finish(self, fail: set[str] = frozenset()) -> None:
        by = {s.name: s for s in self.catalogue.se_list}
        for t in self.queue.values():
            if t.state != WAITING:
                continue
            if t.destination in fail:
                t.state, t.reason = FAILED_T, "the SE refused it"
                continue
            info = self.catalogue.files[t.lfn]
            pfn = f"{by[t.destination].url}/00/00000/{t.guid}"
            info.replicas.append(PfnRef(guid=t.guid, se=t.destination, pfn=pfn))
            t.state = DONE
