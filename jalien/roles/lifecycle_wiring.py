"""jcentral's placement rules, SE decommissioning and dark-data crawl wired to the
catalogue, the SEs (central's listing envelopes) and the data movers' queues: the
CatalogueView port of jalien/datamovers/lifecycle_ports.py implemented with the catalogue
service, and the storage commands' hooks (read-only SEs, the rules at commit)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jalien.catalogue.backend import FindQuery
from jalien.catalogue.model import FILE, Replica
from jalien.catalogue.paths import as_dir
from jalien.catalogue.service import Catalogue
from jalien.config import Settings
from jalien.datamovers.lifecycle import Lifecycle
from jalien.datamovers.lifecycle_ports import CatalogueView, FileInfo, Lister, SeInfo
from jalien.datamovers.model import PfnRef
from jalien.datamovers.rules import TransferQueue
from jalien.datamovers.service import DataMovers
from jalien.metrics import Metrics
from jalien.storage.envelope import EnvelopeSigner
from jalien.storage.se_listing import SeLister
from jalien.storage.service import StorageService


def _ref(r: Replica) -> PfnRef:
    return PfnRef(guid=r.guid, se=r.se, pfn=r.pfn)


class CatalogueLifecycleView:
    """The catalogue as rules, decommissioning and the crawl see it (central's own reads;
    replica drops through Catalogue.drop_replica, so the shared cache stays true)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.cat = catalogue

    async def ses(self) -> list[SeInfo]:
        return [
            SeInfo(
                name=s.name,
                url=s.url,
                site=s.site,
                qos=list(s.qos),
                capacity=s.capacity,
                used=s.used,
                endpoints=list(s.endpoints),
            )
            for s in await self.cat.list_ses()
        ]

    async def replicas_on(self, se: str) -> AsyncIterator[list[PfnRef]]:
        async for page in self.cat.replicas_on(se):
            yield [_ref(r) for r in page]

    async def replicas(self, guid: str) -> list[PfnRef]:
        return [_ref(r) for r in await self.cat.backend.replicas(guid)]

    async def lfns_of(self, guid: str) -> list[str]:
        return sorted(e.path for e in await self.cat.backend.by_guid(guid))

    async def file(self, lfn: str) -> FileInfo | None:
        entry = await self.cat.get(lfn.rstrip("/") or "/")
        if entry is None or entry.type != FILE or not entry.guid:
            return None
        return FileInfo(
            lfn=entry.path,
            guid=entry.guid,
            size=entry.size,
            md5=entry.md5,
            owner=entry.owner,
            replicas=await self.replicas(entry.guid),
        )

    async def files_under(self, directory: str) -> AsyncIterator[list[FileInfo]]:
        base = directory.rstrip("/") or "/"
        if await self.cat.get(base) is None:
            return
        async for page in self.cat.backend.find(FindQuery(base=as_dir(base)), page=500):
            yield [
                FileInfo(
                    lfn=e.path,
                    guid=e.guid,
                    size=e.size,
                    md5=e.md5,
                    owner=e.owner,
                    replicas=await self.replicas(e.guid),
                )
                for e in page
                if e.guid
            ]

    async def drop_replica(self, guid: str, se: str) -> int:
        return len(await self.cat.drop_replica(guid, se))


def build_lifecycle(settings: Settings, catalogue: Catalogue, movers: DataMovers) -> Lifecycle:
    """Rules, decommissions and the crawl of jcentral, in lifecycle.db (not started); the
    transfer queue refuses SEs being decommissioned from now on."""
    signer, _ = EnvelopeSigner.load_or_create(settings.home_path / "envelope")
    lifecycle = Lifecycle(
        settings.path(settings.lifecycle_db, "lifecycle.db"),
        CatalogueLifecycleView(catalogue),
        movers.transfers,
        movers.deletions.enqueue,
        SeLister(signer, str(settings.ca_dir_path)),
        workdir=settings.path(settings.darkdata_workdir, "darkdata"),
        dark_grace=settings.darkdata_grace,
        sort_run=settings.darkdata_sort_run,
    )
    movers.transfers.read_only = lifecycle.read_only  # no mirror to an SE being drained
    return lifecycle


def lifecycle_metrics(metrics: Metrics, lifecycle: Lifecycle) -> None:
    """Rules, decommissions and dark data in jcentral's metrics: one family,
    ``jalien_lifecycle{figure="..."}`` (rules_files, decommission_active, darkdata_lost, ...),
    read from memory at scrape time."""
    metrics.add(
        "jalien_lifecycle",
        "Placement rules, SE decommissions and dark data (docs/datamovers.md)",
        lambda: [((name,), float(value)) for name, value in lifecycle.figures().items()],
        labels=("figure",),
    )


def hook_storage(storage: StorageService, lifecycle: Lifecycle) -> None:
    """access write leaves read-only SEs out; commit hands each new file to the rules."""
    storage.read_only = lifecycle.read_only
    storage.committed = lifecycle.rules.on_commit


# mypy checks here that the classes implement the ports
_view: type[CatalogueView] = CatalogueLifecycleView
_lister: type[Lister] = SeLister


def _transfers(movers: DataMovers) -> TransferQueue:
    return movers.transfers
