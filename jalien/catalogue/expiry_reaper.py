"""Expired LFNs (``lfnexpiretime`` passed) are removed: a step of jcentral's ``lfn-expiry``
loop. Each is removed as ``rm`` would, by central itself (the admin), so that its replicas
go to the removal queue (physical removal by the data movers); its expiry row goes once
the file is gone (or was gone already)."""

from __future__ import annotations

import logging

from jalien.catalogue.backend import NotFound
from jalien.catalogue.expiry import LfnExpiry
from jalien.catalogue.model import now_ms
from jalien.catalogue.permissions import Caller
from jalien.catalogue.service import Catalogue
from jalien.loops import Loop
from jalien.wire.errors import RequestError

log = logging.getLogger("jalien.catalogue.expiry")


class ExpiryReaper:
    def __init__(self, catalogue: Catalogue, expiry: LfnExpiry, caller: Caller) -> None:
        self.catalogue = catalogue
        self.expiry = expiry
        self.caller = caller  # central's admin identity
        self.removed = 0

    def loop(self, interval: float) -> Loop:
        return Loop("lfn-expiry", self.step, interval, logger=log, jitter=0.1)

    async def step(self) -> None:
        await self.reap()

    async def reap(self, batch: int = 500) -> int:
        """Remove the LFNs that are due (one batch); how many were removed."""
        due = await self.expiry.due(now_ms(), batch)
        removed = 0
        done: dict[str, int | None] = {}
        for lfn in due:
            try:
                await self.catalogue.rm(self.caller, lfn, recursive=False)
                removed += 1
            except NotFound:
                pass
            except RequestError as exc:  # a directory, ...: reported, its expiry forgotten
                log.warning("expired %s not removed: %s", lfn, exc)
            done[lfn] = None
        if done:
            await self.expiry.set(done)
        if removed:
            log.info("removed %d expired LFNs", removed)
        self.removed += removed
        return removed
