"""The embedded SE's listing for central (a `list` envelope, HTTPS on loopback) read with
SeLister: every file below the path, none of the uploads in progress, refused without
central's envelope; XRootD listings parsed from `xrdfs ls -l -R` lines."""

from __future__ import annotations

import pytest

from jalien.storage.envelope import Grant
from jalien.storage.se_listing import ListingError, SeLister, key_of
from tests.storage.test_se_server import url


async def test_listing_of_the_embedded_se(embedded_se, signer, grid_pki):
    root = embedded_se.root
    want = set()
    for i in range(5000):  # more than a batch
        rel = f"se/{i % 16:02d}/{i:05d}/f{i}"
        want.add("/" + rel)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / "se/00/00000/.f0.1234.part").write_bytes(b"uploading")
    (root / "other").mkdir()
    (root / "other/not-below").write_bytes(b"x")
    lister = SeLister(signer, str(grid_pki.ca_dir))
    got = [
        p async for batch in lister.listing("ALICE::T::SE", f"{embedded_se.base}/se") for p in batch
    ]
    assert len(got) == len(set(got)) == 5000 and set(got) == want
    empty = SeLister(signer, str(grid_pki.ca_dir)).listing(
        "ALICE::T::SE", f"{embedded_se.base}/none"
    )
    assert [b async for b in empty] == []


async def test_listing_needs_centrals_list_envelope(embedded_se, signer, grid_pki):
    (embedded_se.root / "se").mkdir(parents=True)
    async with _session(grid_pki) as http:
        read = signer.sign(Grant(access="read", pfn="/se"))  # a client's: no listing
        async with http.get(url(embedded_se, read, "/se")) as r:
            assert r.status == 404
        other = signer.sign(Grant(access="list", pfn="/other"))  # another path's
        async with http.get(url(embedded_se, other, "/se")) as r:
            assert r.status == 403
        async with http.get(f"{embedded_se.base}/se") as r:
            assert r.status == 401
    bad = SeLister(signer, str(grid_pki.ca_dir))
    with pytest.raises(ListingError, match=r"cannot list|HTTP"):
        async for _ in bad.listing("ALICE::T::SE", "https://127.0.0.1:1/se"):
            pass


def _session(grid_pki):
    import ssl

    import aiohttp

    ctx = ssl.create_default_context(capath=str(grid_pki.ca_dir))
    ctx.check_hostname = False
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


def test_key_spellings():
    assert key_of("root://h:1094//a/b") == "/a/b" == key_of("https://h/a/b") == key_of("a/b")
