"""What the catalogue tells of the replicas its removals leave without a file: a Protocol the
role implements with the data movers' deletion queue (jalien/datamovers/deletion.py).

The order that keeps a kill -9 from losing or wrongly deleting a PFN: ``hold`` the replicas
(durable) before the removal commits, then ``release`` those the removal left without any
LFN and ``drop`` the others; a removal that raised ``abandon``s them (whoever recovers held
rows asks the catalogue later)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jalien.catalogue.model import Replica


class RemovalQueue(Protocol):
    async def hold(self, replicas: Sequence[Replica]) -> list[int]: ...
    async def release(self, ids: Sequence[int]) -> None: ...
    async def drop(self, ids: Sequence[int]) -> None: ...
    def abandon(self, ids: Sequence[int]) -> None: ...


class NoRemovals:
    """No deletion service: replicas are forgotten with their files (a catalogue alone)."""

    async def hold(self, replicas: Sequence[Replica]) -> list[int]:
        return []

    async def release(self, ids: Sequence[int]) -> None:
        pass

    async def drop(self, ids: Sequence[int]) -> None:
        pass

    def abandon(self, ids: Sequence[int]) -> None:
        pass


class Held:
    """Replicas held for one removal: the ids of the queue and the GUID of each."""

    def __init__(self, ids: list[int], guids: list[str]) -> None:
        self.ids = ids
        self.guids = guids

    def split(self, orphans: set[str]) -> tuple[list[int], list[int]]:
        """(ids to release: their GUID has no LFN left, ids to drop)."""
        release = [i for i, g in zip(self.ids, self.guids, strict=True) if g in orphans]
        drop = [i for i, g in zip(self.ids, self.guids, strict=True) if g not in orphans]
        return release, drop
