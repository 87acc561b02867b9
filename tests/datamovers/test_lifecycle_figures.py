"""The lifecycle's figures for monitoring: read from memory (no database at scrape time),
exposed as jcentral's jalien_lifecycle{figure=...} family."""

from __future__ import annotations

from jalien.datamovers.lifecycle import Lifecycle
from jalien.datamovers.lifecycle_ports import SeInfo
from jalien.metrics import Metrics
from jalien.roles.lifecycle_wiring import lifecycle_metrics
from tests.datamovers.fakes import Deletions, FakeCatalogue, FakeSEs, FakeTransfers

SE = SeInfo(name="ALICE::LOCAL::SE", url="https://127.0.0.1:1/se", qos=["disk"])


async def test_figures_and_metrics(tmp_path):
    catalogue = FakeCatalogue([SE])
    ses = FakeSEs()
    ses.put(SE.name, f"{SE.url}/01/00001/0a1b2c3d-0000-11ee-8000-000000000001")
    lc = Lifecycle(
        tmp_path / "lifecycle.db",
        catalogue,
        FakeTransfers(catalogue),
        Deletions(),
        ses,
        workdir=tmp_path / "work",
    )
    await lc.start()
    try:
        assert [loop.name for loop in lc.loops(1, 1, 0)] == ["placement-rules", "se-decommission"]
        await lc.crawler.crawl(SE.name)
        figures = lc.figures()
        assert figures["darkdata_quarantined"] == 1 and figures["darkdata_crawls"] == 1
        assert figures["rules_rules"] == 0 and figures["decommission_active"] == 0
        metrics = Metrics("jcentral", process=False)
        lifecycle_metrics(metrics, lc)
        text = metrics.text().decode()
        assert 'jalien_lifecycle{figure="darkdata_quarantined"} 1.0' in text
    finally:
        await lc.close()
