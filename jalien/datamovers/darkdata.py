"""Dark data and lost files: Rucio's "sandwich" consistency check of one SE at a time.

A crawl of SE *X* takes three streams: the catalogue's replicas on *X* (the first dump), the
SE's own listing of what it holds, and the catalogue's replicas again (the second dump),
each sorted on disk (``extsort.DiskSorter``: runs of ``run_size`` keys, then a merge; memory
stays bounded for 100M files). One streaming 3-way merge (``jalien._fast.sandwich``, Cython
with a pure twin) then finds:

- **dark** files: on the SE, in neither dump. They are *quarantined*: recorded with the time
  they were first found (``dark_files``); a file found dark again after ``grace`` seconds is
  queued for physical removal (the deletion queue), unless it has been registered by then
  (a commit that came late). A quarantined file that a later crawl no longer finds dark
  leaves the quarantine.
- **lost** replicas: in both dumps, not on the SE. They are reported and flagged
  (``lost_replicas``, replaced by each crawl of the SE); nothing is unregistered here (an SE
  may be listed wrongly once): the recovery of a lost SE (``decommission.py``) and the
  operator act on them.

A file uploaded while the crawl runs is in the second dump and not dark; a replica dropped
meanwhile is in the first dump only and not lost: the sandwich is what keeps a crawl of a
live SE from accusing the files in flight.

Keys are PFN paths ("/se/04/12345/<guid>", ``se_listing.key_of``'s spelling); the GUID of a
key is its last component (AliEn's PFN layout).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from jalien._fast import sandwich
from jalien.datamovers.extsort import DiskSorter, read_batches
from jalien.datamovers.lifecycle_ports import CatalogueView, EnqueueDeletions, Lister, SeInfo
from jalien.datamovers.lifecycle_store import (
    QUARANTINED,
    REMOVED,
    CrawlReport,
    LifecycleStore,
)
from jalien.datamovers.model import PfnRef
from jalien.loops import Loop

log = logging.getLogger("jalien.datamovers.darkdata")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PURGE_BATCH = 1000


class UnknownSE(LookupError):
    pass


class CrawlBusy(RuntimeError):
    pass


def key_of(pfn: str) -> str:
    """A PFN's path with one leading '/' (as storage.se_listing spells listings)."""
    path = urlsplit(pfn).path if "://" in pfn else pfn
    return "/" + path.lstrip("/")


def guid_of(path: str) -> str:
    """The GUID a PFN path ends with ("" when it ends otherwise)."""
    last = path.rsplit("/", 1)[-1]
    return last.lower() if GUID.match(last) else ""


def pfn_at(se_url: str, path: str) -> str:
    """The PFN URL of *path* on the SE at *se_url* (root:// spells it host//path)."""
    parts = urlsplit(se_url)
    sep = "/" if parts.scheme.lower() in ("root", "xroot", "roots", "xroots") else ""
    return f"{parts.scheme}://{parts.netloc}{sep}{path}"


def listing_url(se: SeInfo) -> str:
    """Where an SE is listed: its https:// endpoint when it has one (the embedded SE answers
    central's list envelopes there, beside its root:// URL), else its URL."""
    return next((u for u in [se.url, *se.endpoints] if u.lower().startswith("https://")), se.url)


def _line(key: str) -> bytes:
    if "\n" in key:
        raise ValueError(f"a PFN path with a newline: {key!r}")
    return key.encode("utf-8", "surrogateescape") + b"\n"


class DarkDataCrawler:
    def __init__(
        self,
        catalogue: CatalogueView,
        lister: Lister,
        store: LifecycleStore,
        delete: EnqueueDeletions,
        workdir: Path,
        *,
        grace: float = 7 * 86400.0,
        run_size: int = 500_000,
    ) -> None:
        self.catalogue = catalogue
        self.lister = lister
        self.store = store
        self.delete = delete
        self.workdir = workdir
        self.grace = grace
        self.run_size = run_size
        self._busy: set[str] = set()
        self._turn = 0
        # figures for monitoring (this process, since it started)
        self.crawls = 0
        self.crawl_errors = 0
        self.entries_merged = 0
        self.dark_removed = 0
        self.dark_released = 0
        self.counts: dict[str, int] = {}  # quarantined, removed, lost: as of the last change

    # -- one crawl
    async def _se(self, name: str) -> SeInfo:
        for se in await self.catalogue.ses():
            if se.name.upper() == name.upper():
                return se
        raise UnknownSE(f"no such SE: {name}")

    async def _sorted(self, pages: AsyncIterator[list[str]], out: Path) -> int:
        sorter = DiskSorter(out.parent, out.name, self.run_size)
        try:
            async for page in pages:
                lines = [_line(key_of(p)) for p in page]
                await asyncio.to_thread(sorter.add, lines)
            return await asyncio.to_thread(sorter.finish, out)
        except BaseException:
            await asyncio.to_thread(sorter.discard)
            raise

    async def _dump(self, se: str) -> AsyncIterator[list[str]]:
        async for page in self.catalogue.replicas_on(se):
            yield [r.pfn for r in page]

    async def crawl(self, name: str) -> CrawlReport:
        """Checks SE *name* now (UnknownSE, CrawlBusy if a crawl of it runs already)."""
        se = await self._se(name)
        if se.name in self._busy:
            raise CrawlBusy(f"{se.name} is being checked already")
        self._busy.add(se.name)
        started = time.time()
        work = self.workdir / re.sub(r"[^A-Za-z0-9_.-]", "_", se.name)
        counts = (0, 0, 0)
        try:
            await asyncio.to_thread(shutil.rmtree, work, True)
            work.mkdir(parents=True)
            first = work / "first"
            listing = work / "listing"
            second = work / "second"
            await self._sorted(self._dump(se.name), first)
            await self._sorted(self.lister.listing(se.name, listing_url(se)), listing)
            await self._sorted(self._dump(se.name), second)
            counts = await asyncio.to_thread(_merge, first, listing, second, work)
            found = await asyncio.to_thread(_lines_in, work / "dark")
            missing = await asyncio.to_thread(_lines_in, work / "lost")
            report = CrawlReport(
                se=se.name,
                started=started,
                seconds=time.time() - started,
                first=counts[0],
                listed=counts[1],
                second=counts[2],
                dark=found,
                lost=missing,
            )
            await self._record(report, work)
            await self._recount()
            self.crawls += 1
            self.entries_merged += sum(counts)
            log.info(
                "checked %s: %d listed, %d dark, %d lost (%.1f s)",
                se.name,
                counts[1],
                found,
                missing,
                report.seconds,
            )
            return report
        except Exception as exc:
            self.crawl_errors += 1
            await self.store.record_failed_crawl(
                CrawlReport(
                    se=se.name,
                    started=started,
                    seconds=time.time() - started,
                    first=counts[0],
                    listed=counts[1],
                    second=counts[2],
                    dark=0,
                    lost=0,
                    error=str(exc)[:500],
                )
            )
            raise
        finally:
            self._busy.discard(se.name)
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _record(self, report: CrawlReport, work: Path) -> None:
        """The findings into lifecycle.db a batch at a time (never all of them in memory)."""
        crawl = await self.store.begin_crawl(report)
        darks = _batches(work / "dark")
        while (batch := await asyncio.to_thread(next, darks, None)) is not None:
            await self.store.add_dark(report.se, crawl, batch)
        losts = _batches(work / "lost")
        first = True
        while (batch := await asyncio.to_thread(next, losts, None)) is not None:
            await self.store.add_lost(report.se, [(k, guid_of(k)) for k in batch], first)
            first = False
        if first:
            await self.store.add_lost(report.se, [], True)
        await self.store.end_crawl(report.se, crawl)

    # -- after the grace period
    async def purge(self, now: float | None = None) -> int:
        """Queues the physical removal of files quarantined longer than the grace period
        (those registered meanwhile leave the quarantine instead); returns how many."""
        now = time.time() if now is None else now
        due = await self.store.due_dark(now - self.grace, PURGE_BATCH)
        if not due:
            return 0
        urls = {se.name: se.url for se in await self.catalogue.ses()}
        refs: list[PfnRef] = []
        for dark in due:
            guid = guid_of(dark.path)
            if guid and any(
                r.se == dark.se and key_of(r.pfn) == dark.path
                for r in await self.catalogue.replicas(guid)
            ):
                await self.store.set_dark(dark.se, dark.path, None)  # registered meanwhile
                self.dark_released += 1
                continue
            if dark.se not in urls:
                continue  # the SE is gone from the catalogue: nothing to remove it with
            refs.append(PfnRef(guid=guid, se=dark.se, pfn=pfn_at(urls[dark.se], dark.path)))
        if refs:
            await self.delete(refs)
            for ref in refs:
                await self.store.set_dark(ref.se, key_of(ref.pfn), REMOVED)
            self.dark_removed += len(refs)
            await self._recount()
            log.info("queued %d dark files for removal after their grace period", len(refs))
        return len(refs)

    # -- the background step
    async def step(self) -> None:
        """One SE per step, in turn (those with a URL), then the purge."""
        ses = sorted((s for s in await self.catalogue.ses() if s.url), key=lambda s: s.name)
        if ses:
            se = ses[self._turn % len(ses)]
            self._turn += 1
            if se.name not in self._busy:
                await self.crawl(se.name)
        await self.purge()

    def loop(self, interval: float) -> Loop:
        return Loop("darkdata-crawl", self.step, interval, jitter=0.1, logger=log)

    async def _recount(self) -> None:
        counts = await self.store.dark_counts()
        self.counts = {
            "quarantined": counts.get(QUARANTINED, 0),
            "removed": counts.get(REMOVED, 0),
            "lost": counts.get("LOST", 0),
        }

    async def figures(self) -> dict[str, int]:
        await self._recount()
        return self.figures_now()

    def figures_now(self) -> dict[str, int]:
        """The figures without a database read (those of the store as of the last change)."""
        return {
            **{k: self.counts.get(k, 0) for k in ("quarantined", "removed", "lost")},
            "crawls": self.crawls,
            "crawl_errors": self.crawl_errors,
            "entries_merged": self.entries_merged,
            "dark_removed": self.dark_removed,
            "dark_released": self.dark_released,
        }


def _merge(
    first: Path, listing: Path, second: Path, work: Path, kernel: Any = None
) -> tuple[int, int, int]:
    """The sandwich over three sorted files (*kernel*: a twin, for the benchmark; default
    the one jalien._fast chose); findings to work/dark and work/lost."""
    with open(work / "dark", "wb") as dark, open(work / "lost", "wb") as lost:
        return (kernel or sandwich).merge3(
            read_batches(first),
            read_batches(listing),
            read_batches(second),
            _writer(dark),
            _writer(lost),
        )


def _writer(fh: BinaryIO):
    return fh.write


RECORD_BATCH = 10_000


def _batches(path: Path):
    """The keys of a findings file, RECORD_BATCH at a time."""
    with open(path, "rb") as fh:
        while batch := fh.readlines(RECORD_BATCH * 64):
            yield [line.rstrip(b"\n").decode("utf-8", "replace") for line in batch]


def _lines_in(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
