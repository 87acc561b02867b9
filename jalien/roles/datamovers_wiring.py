"""jcentral's data movers wired to the catalogue and the storage: the Files and Storage ports
of jalien/datamovers implemented with the catalogue service and the storage's SEMover, and
the catalogue's removal queue implemented with the deletion service."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from jalien.catalogue.backend import FindQuery
from jalien.catalogue.model import COLLECTION, DIRECTORY, FILE, Replica
from jalien.catalogue.paths import as_dir
from jalien.catalogue.removals import RemovalQueue
from jalien.catalogue.service import Catalogue
from jalien.config import ConfigError, Settings
from jalien.datamovers.deletion import DeletionService
from jalien.datamovers.model import PfnRef
from jalien.datamovers.ports import FileRecord, Files, Storage, StorageError
from jalien.datamovers.service import DataMovers
from jalien.datamovers.store import DataMoverStore
from jalien.metrics import Metrics
from jalien.storage.envelope import EnvelopeSigner, pfn_for
from jalien.storage.movers import MoveError, SEMover

SE_TTL = 30.0  # seconds the SE list is reused


def _ref(r: Replica) -> PfnRef:
    return PfnRef(guid=r.guid, se=r.se, pfn=r.pfn)


class CatalogueFiles:
    """The catalogue as the data movers see it (central's own reads and writes)."""

    def __init__(
        self,
        catalogue: Catalogue,
        collection_lfns: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.cat = catalogue
        self.collection_lfns = collection_lfns

    async def file(self, lfn: str) -> FileRecord | None:
        entry = await self.cat.get(lfn.rstrip("/") or "/")
        if entry is None or entry.type != FILE or not entry.guid:
            return None
        replicas = await self.cat.backend.replicas(entry.guid)
        return FileRecord(
            lfn=entry.path, guid=entry.guid, size=entry.size, md5=entry.md5,
            owner=entry.owner, replicas=[_ref(r) for r in replicas],
        )  # fmt: skip

    async def files_under(self, lfn: str) -> list[str]:
        entry = await self.cat.get(lfn.rstrip("/") or "/")
        if entry is None:
            return []
        if entry.type == DIRECTORY:
            found: list[str] = []
            async for page in self.cat.backend.find(FindQuery(base=as_dir(entry.path))):
                found.extend(e.path for e in page)
            return found
        xml = entry.type == COLLECTION or entry.name.endswith(".xml")
        if xml and self.collection_lfns is not None:  # an XML collection: its LFNs
            return await self.collection_lfns(entry.path)
        return []

    async def se_names(self) -> list[str]:
        return [se.name for se in await self.cat.list_ses()]

    async def replicas(self, guid: str) -> list[PfnRef]:
        return [_ref(r) for r in await self.cat.backend.replicas(guid)]

    async def referenced(self, guid: str) -> bool:
        return bool(await self.cat.backend.by_guid(guid))

    async def forget(self, guid: str) -> None:
        await self.cat.forget_orphan(guid)

    async def add_replica(self, ref: PfnRef) -> bool:
        return await self.cat.commit_replica(Replica(guid=ref.guid, se=ref.se, pfn=ref.pfn))

    async def drop_replica(self, guid: str, se: str) -> list[PfnRef]:
        return [_ref(r) for r in await self.cat.drop_replica(guid, se)]


class SEStorage:
    """The SEs through central's SEMover (its envelopes)."""

    def __init__(self, mover: SEMover, catalogue: Catalogue) -> None:
        self.mover = mover
        self.cat = catalogue
        self._urls: dict[str, str] = {}
        self._read = 0.0

    async def delete(self, ref: PfnRef) -> None:
        try:
            await self.mover.delete(ref.se, ref.pfn, ref.guid)
        except MoveError as exc:
            raise StorageError(str(exc), exc.permanent) from None

    async def destination(self, se: str, guid: str) -> str:
        if se not in self._urls or time.monotonic() - self._read > SE_TTL:
            self._urls = {s.name: s.url for s in await self.cat.list_ses()}
            self._read = time.monotonic()
        url = self._urls.get(se)
        if not url:
            raise StorageError(f"unknown SE {se}", permanent=True)
        return pfn_for(url, guid)

    async def copy(
        self, source: PfnRef, target: PfnRef, size: int, md5: str, fresh: bool = False
    ) -> None:
        try:
            await self.mover.copy(
                source.se, source.pfn, target.se, target.pfn, source.guid, size, md5,
                check_first=not fresh,
            )  # fmt: skip
        except MoveError as exc:
            raise StorageError(str(exc), exc.permanent) from None


class RemovalsToDeletions:
    """The catalogue's removal queue: the deletion service's hold/release."""

    def __init__(self, deletions: DeletionService) -> None:
        self.deletions = deletions

    async def hold(self, replicas: Sequence[Replica]) -> list[int]:
        return await self.deletions.hold([_ref(r) for r in replicas])

    async def release(self, ids: Sequence[int]) -> None:
        if ids:
            await self.deletions.release(ids)

    async def drop(self, ids: Sequence[int]) -> None:
        if ids:
            await self.deletions.drop(ids)

    def abandon(self, ids: Sequence[int]) -> None:
        self.deletions.abandon(ids)


def datamovers_store(settings: Settings) -> DataMoverStore:
    """The queues: in the task queue's MariaDB database when the task queue is on MariaDB
    (and datamovers_db is not set), else in a SQLite file (the task queue's by default)."""
    if settings.taskqueue_backend == "mariadb" and not settings.datamovers_db:
        try:
            from jalien.jobs.mariadb_store import MariaDBTaskQueueConfig
        except ImportError as exc:
            raise ConfigError(f"taskqueue_backend = mariadb: {exc} (install mysqlclient)") from None
        try:
            config = msgspec.convert(settings.taskqueue_mariadb, MariaDBTaskQueueConfig)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"[taskqueue_mariadb]: {exc}") from None
        return DataMoverStore.mariadb(config.dsn, readers=config.readers)
    return DataMoverStore(settings.path(settings.datamovers_db, "taskqueue.db"))


def build_datamovers(settings: Settings, catalogue: Catalogue) -> tuple[DataMovers, SEMover]:
    """The data movers of jcentral, their queues in the task-queue database file; the
    catalogue's removals go to their deletion queue from now on."""
    signer, _ = EnvelopeSigner.load_or_create(settings.home_path / "envelope")
    mover = SEMover(signer, str(settings.ca_dir_path), timeout=settings.transfer_timeout)
    movers = DataMovers(
        datamovers_store(settings),
        CatalogueFiles(catalogue),
        SEStorage(mover, catalogue),
        deletion_parallel=settings.deletion_parallel,
        deletion_per_se=settings.deletion_per_se,
        deletion_attempts=settings.deletion_attempts,
        deletion_backoff=settings.deletion_backoff,
        transfer_workers=settings.transfer_workers,
        transfer_per_se=settings.transfer_per_se,
        transfer_backoff=settings.transfer_backoff,
        # the same jcentral after a restart: its copies cut short are taken back at once
        owner=f"{socket.gethostname()}:{settings.home_path}",
    )
    catalogue.removals = RemovalsToDeletions(movers.deletions)
    return movers, mover


def datamover_metrics(metrics: Metrics, movers: DataMovers) -> None:
    """The data movers in jcentral's metrics: transfers by the state they entered
    (``jalien_transfers``, the counter the metrics keep for them) and one gauge family
    ``jalien_datamovers{figure=...}`` (deletions held/queued/failed, deleted, transfers per
    state, running, bytes moved), read from the queues before each scrape."""
    metrics.transfers = movers.transfers.entered
    figures: dict[str, float] = {}

    async def refresh() -> None:
        figures.clear()
        figures.update(await movers.figures())

    metrics.refresh(refresh)
    metrics.add(
        "jalien_datamovers",
        "Physical removal and transfers (docs/datamovers.md)",
        lambda: [((name,), value) for name, value in sorted(figures.items())],
        labels=("figure",),
    )


class _Central:
    """Central itself, reading an XML collection for mirror."""

    login = "admin"
    roles = ("admin",)
    home = "/"
    kind = None


def read_collections_with(
    movers: DataMovers, lfns_of: Callable[[Any, str], Awaitable[list[str]]]
) -> None:
    """mirror of an XML collection: its LFNs read by *lfns_of(identity, lfn)* (the
    collection commands'), as central."""
    files = movers.files
    if isinstance(files, CatalogueFiles):
        files.collection_lfns = lambda lfn: lfns_of(_Central(), lfn)


# mypy checks here that the classes implement the ports
_files: type[Files] = CatalogueFiles
_storage: type[Storage] = SEStorage
_removals: type[RemovalQueue] = RemovalsToDeletions
