"""The data movers as one object a role builds and wires: the durable queues, the deletion
service and the transfer service, and their background loops."""

from __future__ import annotations

from pathlib import Path

from jalien.datamovers.deletion import DeletionService
from jalien.datamovers.ports import Files, Storage
from jalien.datamovers.store import DataMoverStore
from jalien.datamovers.transfer import TransferService
from jalien.loops import Loop


class DataMovers:
    def __init__(
        self,
        store: DataMoverStore | str | Path,
        files: Files,
        storage: Storage,
        *,
        deletion_parallel: int = 16,
        deletion_per_se: int = 8,
        deletion_attempts: int = 10,
        deletion_backoff: float = 30.0,
        transfer_workers: int = 8,
        transfer_per_se: int = 2,
        transfer_backoff: float = 10.0,
        owner: str = "",
    ) -> None:
        self.files = files
        self.store = store if isinstance(store, DataMoverStore) else DataMoverStore(store)
        self.deletions = DeletionService(
            self.store, files, storage, parallel=deletion_parallel, per_se=deletion_per_se,
            max_attempts=deletion_attempts, backoff_base=deletion_backoff,
        )  # fmt: skip
        self.transfers = TransferService(
            self.store, files, storage, self.deletions, workers=transfer_workers,
            per_se=transfer_per_se, backoff_base=transfer_backoff, owner=owner,
        )  # fmt: skip

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.transfers.close()
        await self.store.close()

    def loops(self, deletion_interval: float, transfer_interval: float) -> list[Loop]:
        """The two background loops (``pfn-deletion``, ``transfers``) for the role's registry."""
        return [
            self.deletions.loop(deletion_interval),
            self.transfers.loop(transfer_interval),
        ]

    async def figures(self) -> dict[str, float]:
        """What monitoring shows of the data movers (jalien_datamovers{figure=...})."""
        deletions = await self.deletions.counts()
        transfers = await self.transfers.counts()
        out: dict[str, float] = {
            "deletions_held": deletions.held,
            "deletions_queued": deletions.queued,
            "deletions_failed": deletions.failed,
            "deleted": deletions.deleted,
            "deletion_attempts_failed": deletions.attempts_failed,
            "transfers_running": transfers.running,
            "transfers_done": transfers.done,
            "transfer_attempts_failed": transfers.failed_attempts,
            "transfer_bytes": transfers.bytes_moved,
        }
        for state, count in transfers.by_state.items():
            out[f"transfers_{state.lower()}"] = count
        return out
