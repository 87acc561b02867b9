"""The dark-data crawl on an in-memory catalogue and SE: exactly the injected dark and lost
files, the sandwich's tolerance of files in flight, quarantine then removal after the
grace period (not of a file registered meanwhile), spills to disk (run_size 2)."""

from __future__ import annotations

import uuid

import pytest

from jalien.datamovers import darkdata
from jalien.datamovers.darkdata import DarkDataCrawler, UnknownSE, guid_of, key_of, pfn_at
from jalien.datamovers.lifecycle_ports import SeInfo
from jalien.datamovers.lifecycle_store import QUARANTINED, REMOVED, LifecycleStore
from jalien.datamovers.model import PfnRef
from tests.datamovers.fakes import Deletions, FakeCatalogue, FakeSEs

SE = "ALICE::LOCAL::SE"
URL = "https://127.0.0.1:8099/se"


def g() -> str:
    return str(uuid.uuid1())


@pytest.fixture
async def world(tmp_path):
    catalogue = FakeCatalogue([SeInfo(name=SE, url=URL, qos=["disk"])])
    ses = FakeSEs()
    store = LifecycleStore(tmp_path / "lifecycle.db")
    await store.start()
    deletions = Deletions()
    crawler = DarkDataCrawler(
        catalogue, ses, store, deletions, tmp_path / "crawl", grace=100.0, run_size=2
    )
    yield catalogue, ses, store, deletions, crawler
    await store.close()


async def test_finds_exactly_the_injected(world, monkeypatch):
    catalogue, ses, store, deletions, crawler = world
    monkeypatch.setattr(darkdata, "RECORD_BATCH", 1)  # findings recorded a few at a time
    for i in range(10):
        info = catalogue.add(f"/a/f{i}", g(), SE)
        if i not in (3, 7):  # lost: registered, not on the SE
            ses.put(SE, info.replicas[0].pfn)
    dark = [f"{URL}/01/00001/{g()}" for _ in range(3)]
    for pfn in dark:
        ses.put(SE, pfn)
    # in flight while listing: uploaded and committed (second dump only), dropped (first only)
    late = f"{URL}/02/00002/{g()}"
    gone = catalogue.add("/a/gone", g(), SE)

    def meanwhile():
        ses.put(SE, late)
        catalogue.add("/a/late", late.rsplit("/", 1)[1], SE).replicas[0] = PfnRef(
            guid=guid_of(key_of(late)), se=SE, pfn=late
        )
        catalogue.files["/a/late"].replicas = [PfnRef(guid=guid_of(key_of(late)), se=SE, pfn=late)]
        del catalogue.files["/a/gone"]

    ses.during_listing.append(meanwhile)
    report = await crawler.crawl(SE.lower())  # SE names are case-insensitive
    assert (report.first, report.second) == (11, 11) and report.listed == 12
    assert report.dark == 3 and report.lost == 2
    found = await store.dark_files(SE)
    assert sorted(d.path for d in found) == sorted(key_of(p) for p in dark)
    assert all(d.state == QUARANTINED for d in found)
    lost = await store.lost_replicas(SE)
    want = {catalogue.files[f"/a/f{i}"].guid for i in (3, 7)}
    assert {x.guid for x in lost} == want and gone.guid not in want
    assert not list((crawler.workdir).rglob("*"))  # its work files are gone

    # the grace period: nothing before it; after it, all but the one registered meanwhile
    assert await crawler.purge() == 0 and not deletions.queued
    registered = dark[0]
    catalogue.add("/a/came-late", guid_of(key_of(registered)), SE).replicas = [
        PfnRef(guid=guid_of(key_of(registered)), se=SE, pfn=registered)
    ]
    assert await crawler.purge(now=found[0].found + 101) == 2
    assert sorted(r.pfn for r in deletions.queued) == sorted(dark[1:])
    assert [d.state for d in await store.dark_files(SE)] == [REMOVED, REMOVED]
    figures = await crawler.figures()
    assert figures["removed"] == 2 and figures["lost"] == 2 and figures["dark_released"] == 1


async def test_quarantine_forgets_what_is_no_longer_dark(world):
    _, ses, store, _, crawler = world
    pfn = f"{URL}/01/00001/{g()}"
    ses.put(SE, pfn)
    await crawler.crawl(SE)
    first = await store.dark_files(SE)
    assert len(first) == 1
    await crawler.crawl(SE)  # still dark: found time kept
    assert await store.dark_files(SE) == first
    ses.held[SE].clear()
    await crawler.crawl(SE)
    assert await store.dark_files(SE) == []


async def test_unknown_se_changes_nothing(world):
    _, _, store, _, crawler = world
    with pytest.raises(UnknownSE, match="no such SE: NOPE"):
        await crawler.crawl("NOPE")
    assert await store.crawls() == []


async def test_step_takes_the_ses_in_turn(world):
    catalogue, _, store, _, crawler = world
    catalogue.se_list.append(SeInfo(name="ALICE::X::XRD", url="root://h:1094/"))
    await crawler.step()
    await crawler.step()
    assert sorted(c.se for c in await store.crawls()) == ["ALICE::LOCAL::SE", "ALICE::X::XRD"]


def test_pfn_spellings():
    guid = g()
    assert key_of(f"root://h:1094//data/01/00001/{guid}") == f"/data/01/00001/{guid}"
    assert pfn_at("root://h:1094/", f"/01/x/{guid}") == f"root://h:1094//01/x/{guid}"
    assert pfn_at(URL, f"/se/01/x/{guid}") == f"https://127.0.0.1:8099/se/01/x/{guid}"
    assert guid_of(f"/se/01/x/{guid.upper()}") == guid and guid_of("/se/readme") == ""
