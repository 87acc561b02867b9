"""The LFN expiry store: set, extend (the command computes it), remove, show; it starts at
its first use and survives a restart."""

from __future__ import annotations

from jalien.catalogue.expiry import LfnExpiry


async def test_set_get_remove_and_restart(tmp_path):
    store = LfnExpiry(tmp_path / "x.db")
    assert await store.get([]) == {}
    await store.set({"/a": 1000, "/b": 2000})
    await store.set({"/a": 3000})
    assert await store.get(["/a", "/b", "/c"]) == {"/a": 3000, "/b": 2000}
    await store.set({"/b": None})
    await store.close()
    again = LfnExpiry(tmp_path / "x.db")
    assert await again.get(["/a", "/b"]) == {"/a": 3000}
    await again.close()
