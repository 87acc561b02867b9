"""The data movers' figures in jcentral's metrics: jalien_datamovers{figure=...} read from
the queues at scrape time, jalien_transfers counted by the state transfers entered."""

from __future__ import annotations

from jalien.datamovers.model import PfnRef
from jalien.datamovers.service import DataMovers
from jalien.metrics import Metrics, value
from jalien.roles.datamovers_wiring import datamover_metrics
from tests.datamovers.test_queues import MemFiles, MemStorage, U


async def test_figures_at_scrape_time(tmp_path):
    files, storage = MemFiles(), MemStorage()
    movers = DataMovers(tmp_path / "q.db", files, storage)
    await movers.start()
    try:
        metrics = Metrics("jcentral", process=False)
        datamover_metrics(metrics, movers)
        files.put("/f", "g", "u", ["SE::A"])
        await movers.deletions.enqueue([PfnRef(guid="x", se="SE::A", pfn="p")] * 3)
        await movers.transfers.mirror(U, "/f", "SE::B")
        text = (await metrics.exposition()).decode()
        assert value(text, "jalien_datamovers", figure="deletions_queued") == 3
        assert value(text, "jalien_datamovers", figure="transfers_waiting") == 1
        assert value(text, "jalien_transfers_total", state="WAITING") == 1
        await movers.deletions.step()
        text = (await metrics.exposition()).decode()
        assert value(text, "jalien_datamovers", figure="deleted") == 3
        assert value(text, "jalien_datamovers", figure="deletions_queued") == 0
    finally:
        await movers.close()
