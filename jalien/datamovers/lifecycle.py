"""Placement rules, SE decommissioning and the dark-data crawl as one object a role builds
(``roles/lifecycle_wiring.py``): their store (``lifecycle.db``), the services, their loops
and their figures for monitoring. The transfer and deletion queues are the data movers'
(handed in as the small interfaces of ``rules.TransferQueue`` and
``lifecycle_ports.EnqueueDeletions``)."""

from __future__ import annotations

from pathlib import Path

from jalien.datamovers.darkdata import DarkDataCrawler
from jalien.datamovers.decommission import Decommissioner
from jalien.datamovers.lifecycle_ports import CatalogueView, EnqueueDeletions, Lister
from jalien.datamovers.lifecycle_store import LifecycleStore
from jalien.datamovers.rules import PlacementRules, TransferQueue
from jalien.loops import Loop


class Lifecycle:
    def __init__(
        self,
        path: str | Path,
        catalogue: CatalogueView,
        transfers: TransferQueue,
        delete: EnqueueDeletions,
        lister: Lister,
        *,
        workdir: Path,
        dark_grace: float = 7 * 86400.0,
        sort_run: int = 500_000,
    ) -> None:
        self.store = LifecycleStore(path)
        self.rules = PlacementRules(catalogue, self.store, transfers)
        self.decommissions = Decommissioner(catalogue, self.store, self.rules, transfers, delete)
        self.rules.read_only = self.decommissions.read_only
        self.crawler = DarkDataCrawler(
            catalogue, lister, self.store, delete, workdir, grace=dark_grace, run_size=sort_run
        )

    async def start(self) -> None:
        await self.store.start()
        await self.rules.load()
        await self.decommissions.load()

    async def follow(self) -> None:
        """What other processes sharing the store changed: rules added or removed,
        decommissions started (jcentral's workers: ``roles/worker_follow.py``)."""
        await self.rules.follow()
        await self.decommissions.follow()

    async def close(self) -> None:
        await self.store.close()

    def read_only(self) -> frozenset[str]:
        """The SEs taking no new file (upper case): write placement leaves them out."""
        return self.decommissions.read_only()

    def loops(self, rules: float, decommission: float, darkdata: float) -> list[Loop]:
        """``placement-rules``, ``se-decommission`` and ``darkdata-crawl`` (0: not run)."""
        out = []
        if rules > 0:
            out.append(self.rules.loop(rules))
        if decommission > 0:
            out.append(self.decommissions.loop(decommission))
        if darkdata > 0:
            out.append(self.crawler.loop(darkdata))
        return out

    def figures(self) -> dict[str, int]:
        """Monitoring: rules, decommissions and dark data, one flat mapping, from memory
        (the dark-data counts as of the last crawl or purge)."""
        out = {f"rules_{k}": v for k, v in self.rules.figures().items()}
        out.update({f"decommission_{k}": v for k, v in self.decommissions.figures().items()})
        out.update({f"darkdata_{k}": v for k, v in self.crawler.figures_now().items()})
        return out
