"""What the data movers need of the catalogue and of the storage, as Protocols: a role
implements them (roles/datamovers_wiring.py) with the catalogue service and the storage
clients; tests implement them in memory."""

from __future__ import annotations

from typing import Protocol

import msgspec

from jalien.datamovers.model import PfnRef


class FileRecord(msgspec.Struct, kw_only=True):
    """A file of the catalogue as a transfer needs it."""

    lfn: str
    guid: str
    size: int
    md5: str
    owner: str
    replicas: list[PfnRef] = []


class Files(Protocol):
    """The catalogue as the data movers see it."""

    async def file(self, lfn: str) -> FileRecord | None:
        """The file at *lfn* (None: no such file, or a directory)."""
        ...

    async def files_under(self, lfn: str) -> list[str]:
        """The files (LFNs) of a directory, recursively, or of an XML collection."""
        ...

    async def se_names(self) -> list[str]:
        """The storage elements known, their names as the catalogue spells them."""
        ...

    async def replicas(self, guid: str) -> list[PfnRef]: ...

    async def referenced(self, guid: str) -> bool:
        """Whether an LFN still points to *guid* (a removal that did not commit)."""
        ...

    async def forget(self, guid: str) -> None:
        """Drop the replica rows of a GUID no LFN points to (a removal cut short)."""
        ...

    async def add_replica(self, ref: PfnRef) -> bool:
        """Register a new replica (idempotent: once only); False if no LFN has the GUID."""
        ...

    async def drop_replica(self, guid: str, se: str) -> list[PfnRef]:
        """Unregister the replicas of *guid* on *se*; the ones dropped."""
        ...


class StorageError(Exception):
    """A delete or a copy failed; *permanent*: another attempt would fail the same way."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Storage(Protocol):
    """The SEs, reached with central's own envelopes."""

    async def delete(self, ref: PfnRef) -> None:
        """Remove the file at ref.pfn on ref.se; a file that is not there is no error.
        StorageError otherwise."""
        ...

    async def destination(self, se: str, guid: str) -> str:
        """The PFN a new replica of *guid* gets on *se* (AliEn's layout); StorageError
        (permanent) for an SE the storage side does not know."""
        ...

    async def copy(
        self, source: PfnRef, target: PfnRef, size: int, md5: str, fresh: bool = False
    ) -> None:
        """Copy source -> target (third-party between XRootD SEs, streamed otherwise),
        verified at the target by size and md5; a target that already holds exactly this
        file is success (not asked when *fresh*: no attempt ever wrote there).
        StorageError otherwise."""
        ...
