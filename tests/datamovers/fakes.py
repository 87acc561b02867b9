"""In-memory catalogue and SEs for the data-lifecycle tests (placement rules, decommission,
dark data): the Protocols of jalien/datamovers/lifecycle_ports.py, without I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from jalien.datamovers.darkdata import key_of
from jalien.datamovers.lifecycle_ports import FileInfo, SeInfo
from jalien.datamovers.model import PfnRef


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
