"""The catalogue's optimizers (after JAliEn's ``alien.optimizers.catalogue``): background
steps that look at the tables' row counts (``CatalogueBackend.table_counts``, kept current
cheaply) and act.

- ``guid-tables`` (JAliEn's GuidTable): when the newest GUID table (its references or its
  replicas) passes ``guid_table_max_rows``, a new one takes the GUIDs from shortly after
  now on (``rotate_guid_table``: once every process has re-read the index); lookups by GUID
  look in every table, so a GUID written anywhere is found.
- ``lfn-tables`` (JAliEn's LTables): an LFN table past ``lfn_table_max_rows`` raises an
  alarm: a log line, the ``alarm`` hook (a metric), an optimiserLogs entry; an admin splits
  it with ``moveDirectory``.

Each run leaves one entry in the optimiser log (optimiserLogs): what it saw and did.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from jalien.catalogue.backend import CatalogueBackend
from jalien.catalogue.optimiser_log import OptimiserLog
from jalien.catalogue.table_counts import TableCount
from jalien.loops import Loop, Step

log = logging.getLogger("jalien.optimizers")

GUID_TABLES = "guid-tables"
LFN_TABLES = "lfn-tables"
LFN_SPLIT = "lfn-split"
NAMES = (GUID_TABLES, LFN_TABLES, LFN_SPLIT)

Alarm = Callable[[TableCount, int], None]  # (the table, the threshold it passed)


class CatalogueOptimizers:
    def __init__(
        self,
        backend: CatalogueBackend,
        journal: OptimiserLog,
        *,
        guid_max_rows: int,
        lfn_max_rows: int,
        alarm: Alarm | None = None,
    ) -> None:
        self.backend = backend
        self.journal = journal
        self.guid_max_rows = guid_max_rows
        self.lfn_max_rows = lfn_max_rows
        self.alarm = alarm
        self.over: dict[str, int] = {}  # LFN tables past the threshold -> rows (metrics)

    async def guid_tables(self) -> None:
        """One run of the GUID-table optimizer."""
        counts = await self.backend.table_counts()
        newest: dict[str, TableCount] = {}
        for c in counts:
            if c.kind in ("guid", "pfn") and (
                c.kind not in newest or c.since > newest[c.kind].since
            ):
                newest[c.kind] = c
        if "guid" not in newest:
            await self.journal.add(GUID_TABLES, "no GUID tables here (one replica table)")
            return
        fullest = max(newest.values(), key=lambda c: c.rows)
        if fullest.rows < self.guid_max_rows:
            await self.journal.add(
                GUID_TABLES, f"{fullest.table}: {fullest.rows} rows of {self.guid_max_rows}"
            )
            return
        done = await self.backend.rotate_guid_table()
        log.info("GUID tables: %s has %d rows: %s", fullest.table, fullest.rows, done)
        await self.journal.add(GUID_TABLES, f"{fullest.table} has {fullest.rows} rows: {done}")

    async def lfn_tables(self) -> None:
        """One run of the LFN-table optimizer: alarms for tables past the threshold."""
        counts = [c for c in await self.backend.table_counts() if c.kind == "lfn"]
        over = {c.table: c.rows for c in counts if c.rows >= self.lfn_max_rows}
        for c in counts:
            if c.table not in over:
                continue
            text = (
                f"ALARM: LFN table {c.table} ({c.prefix} on host {c.host}) has {c.rows} rows, "
                f"past {self.lfn_max_rows}: split it (moveDirectory)"
            )
            log.warning("%s", text)
            if self.alarm is not None:
                self.alarm(c, self.lfn_max_rows)
            await self.journal.add(LFN_TABLES, text, level="alarm")
        self.over = over
        biggest = max(counts, key=lambda c: c.rows, default=None)
        if not over and biggest is not None:
            await self.journal.add(
                LFN_TABLES,
                f"{len(counts)} LFN tables, the biggest {biggest.table} ({biggest.prefix}) "
                f"with {biggest.rows} rows of {self.lfn_max_rows}",
            )

    async def move_directory(self, directory: str, host: int | None = None) -> str:
        """moveDirectory: the split, logged where admins read (its start, its outcome)."""
        await self.journal.add(LFN_SPLIT, f"{directory}: split starts (host {host})")
        try:
            done = await self.backend.move_directory(directory, host)
        except Exception as exc:
            await self.journal.add(LFN_SPLIT, f"{directory}: {exc}", level="error")
            raise
        await self.journal.add(LFN_SPLIT, done)
        return done

    def loops(self, guid_interval: float, lfn_interval: float) -> list[Loop]:
        return [
            Loop(GUID_TABLES, self._step(GUID_TABLES, self.guid_tables), guid_interval,
                 jitter=0.1, logger=log),
            Loop(LFN_TABLES, self._step(LFN_TABLES, self.lfn_tables), lfn_interval,
                 jitter=0.1, logger=log),
        ]  # fmt: skip

    def _step(self, name: str, run: Callable[[], Awaitable[None]]) -> Step:
        """*run* as a loop's step; a failure is also written where admins read."""

        async def step() -> None:
            try:
                await run()
            except Exception as exc:
                with contextlib.suppress(Exception):  # the database may be what failed
                    await self.journal.add(name, f"failed: {type(exc).__name__}: {exc}", "error")
                raise

        return step
