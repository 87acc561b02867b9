"""What placement rules, decommissioning and the dark-data crawl need of the catalogue and
of the storage, as Protocols (the role implements them in roles/lifecycle_wiring.py; tests
in memory). Deletions and transfers go through the queues of this service
(``DeletionService.enqueue``, the transfer queue), handed over as callables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

from jalien.datamovers.model import PfnRef


class SeInfo(msgspec.Struct, kw_only=True):
    """A storage element as placement sees it."""

    name: str
    url: str
    site: str = ""
    qos: list[str] = []
    capacity: int = 0  # bytes, 0: unknown
    used: int = 0
    endpoints: list[str] = []  # other URLs of the same files (the embedded SE's https://)

    @property
    def free(self) -> int:
        """Bytes free; -1 when the SE states no capacity (ranked after those that do)."""
        return self.capacity - self.used if self.capacity else -1


class FileInfo(msgspec.Struct, kw_only=True):
    """A file of the catalogue with its replicas."""

    lfn: str
    guid: str
    size: int
    md5: str
    owner: str
    replicas: list[PfnRef] = []


class CatalogueView(Protocol):
    async def ses(self) -> list[SeInfo]:
        """Every SE registered, with its URL, QoS tags and space."""
        ...

    def replicas_on(self, se: str) -> AsyncIterator[list[PfnRef]]:
        """Pages of every replica registered on *se* (no order promised)."""
        ...

    async def replicas(self, guid: str) -> list[PfnRef]: ...

    async def lfns_of(self, guid: str) -> list[str]:
        """The LFNs pointing to *guid* (none: the replica is an orphan)."""
        ...

    async def file(self, lfn: str) -> FileInfo | None: ...

    def files_under(self, directory: str) -> AsyncIterator[list[FileInfo]]:
        """Pages of the files below *directory*, recursively, with their replicas."""
        ...

    async def drop_replica(self, guid: str, se: str) -> int:
        """Unregister the replicas of *guid* on *se*; how many went."""
        ...


class Lister(Protocol):
    def listing(self, se: str, url: str) -> AsyncIterator[list[str]]:
        """Batches of the PFN paths of every file the SE holds (unsorted)."""
        ...


EnqueueDeletions = Callable[[Sequence[PfnRef]], Awaitable[list[int]]]
