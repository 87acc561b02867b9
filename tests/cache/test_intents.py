"""Crash consistency of the store: generations, write intents and their reaping."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from jalien.cache.store import CacheStore, Policy

POLICIES = {"w": Policy(max_entries=1000)}


def _store(path, **kw) -> CacheStore:
    return CacheStore(path, policies=POLICIES, writer=False, **kw)


def _other(path, code: str) -> None:
    """*code* in another process, with ``b`` its store on *path*."""
    script = "import sys\nfrom jalien.cache.store import CacheStore\n"
    script += "b = CacheStore(sys.argv[1], writer=False)\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert done.returncode == 0


def test_a_put_computed_before_an_invalidation_of_another_process_is_refused(tmp_path):
    a = _store(tmp_path / "c")
    try:
        since = a.since()  # a lookup in A misses, A reads its database ...
        _other(tmp_path / "c", "b.invalidate('/alice/d/f')\nb.close()")  # ... B writes there
        a.release()
        a.set("w", b"k", b"old", scope="/alice/d/f", since=since)
        a.set("w", b"other", b"v", scope="/alice/e", since=since)  # elsewhere: kept
        a.run_once()
        a.release()
        assert a.get("w", b"k") is None and a.outdated == 1
        assert a.get("w", b"other") == b"v"
        a.set("w", b"k", b"new", scope="/alice/d/f", since=a.since())
        a.run_once()
        assert a.get("w", b"k") == b"new"
    finally:
        a.close()


def test_a_write_in_flight_drops_before_and_refuses_until_it_ends(tmp_path):
    a = _store(tmp_path / "c")
    try:
        a.set("w", b"k", b"v", scope="/alice/d/f")
        a.run_once()
        intent = a.begin_write(["/alice/d"])
        a.run_once()
        assert intent.durable.done()
        a.release()
        assert a.get("w", b"k") is None  # dropped before the catalogue commits
        a.set("w", b"k", b"during", scope="/alice/d/f", since=a.since())
        a.run_once()
        a.release()
        assert a.get("w", b"k") is None  # a write is in flight there: not kept
        # the process that reads has not written: the intent is another's (alive: kept)
        _other(
            tmp_path / "c",
            "b.set('w', b'x', b'y', scope='/alice/d/g', since=b.since())\nb.close()",
        )
        a.release()
        assert a.get("w", b"x") is None
        a.end_write(intent)
        a.run_once()
        a.set("w", b"k", b"after", scope="/alice/d/f", since=a.since())
        a.run_once()
        assert a.get("w", b"k") == b"after"
    finally:
        a.close()


def test_a_write_of_this_process_over_before_the_lookup_does_not_refuse_its_put(tmp_path):
    """touch then find in one process: the find's lookup reads the generation before the
    touch's queued invalidation is committed, yet the touch was over before it began."""
    a = _store(tmp_path / "c")
    try:
        intent = a.begin_write(["/alice/d/f"])
        a.run_once()
        a.end_write(intent)  # the catalogue committed; the second drop is queued
        a.invalidate("/alice/d")
        since = a.since()  # a lookup misses now
        a.set("w", b"k", b"v", scope="/alice/d", since=since)
        a.run_once()
        a.release()
        assert a.get("w", b"k") == b"v" and a.outdated == 0
        since = a.since()  # but one that misses before a write of this process begins
        intent = a.begin_write(["/alice/d/g"])
        a.run_once()
        a.end_write(intent)
        a.run_once()
        a.set("w", b"k2", b"v", scope="/alice/d", since=since)
        a.run_once()
        assert a.get("w", b"k2") is None and a.outdated == 1
    finally:
        a.close()


KILLED = textwrap.dedent(
    """
    import os, sys
    from jalien.cache.store import CacheStore
    store = CacheStore(sys.argv[1], writer=False)
    intent = store.begin_write(["/alice/d"])
    store.run_once()
    os._exit(9)  # dies between the intent and its end, as a kill -9 would
    """
)


def test_the_intent_of_a_dead_process_is_reaped_at_start(tmp_path):
    path = tmp_path / "c"
    _store(path).close()
    done = subprocess.run([sys.executable, "-c", KILLED, str(path)], check=False)
    assert done.returncode == 9
    store = _store(path)
    try:
        assert store.reaped == 1
        store.set("w", b"k", b"v", scope="/alice/d/f", since=store.since())
        store.run_once()
        assert store.get("w", b"k") == b"v"
    finally:
        store.close()


def test_the_writer_sleeps_until_there_is_work(tmp_path):
    """An idle writer blocks on its queue until the next sweep (it polled every 5 ms: ~1% of
    a core for an idle jcentral), and still commits at once when work comes."""
    store = CacheStore(tmp_path / "c", policies=POLICIES, sweep_interval=30.0)
    waits: list[float] = []
    run_once = store.run_once

    def watched(timeout: float = 0.0) -> bool:
        waits.append(timeout)
        return run_once(timeout)

    try:
        store.flush().result(10)
        store.run_once = watched  # type: ignore[method-assign]
        for i in range(3):
            store.set("w", b"k%d" % i, b"v")
            store.flush().result(10)
        assert waits and min(waits) > 10.0, waits
        assert store.get("w", b"k2") == b"v"
    finally:
        store.close()


def test_after_a_reboot_the_store_starts_empty(tmp_path, monkeypatch):
    """Commits are not flushed to disk and a machine crash may roll back the catalogue's last
    commits (SQLite, synchronous=NORMAL): nothing in the store outlives a reboot."""
    import jalien.cache.store as store_module

    monkeypatch.setattr(store_module, "_boot_id", lambda: b"boot-1")
    store = CacheStore(tmp_path / "c", policies=POLICIES)
    store.set("w", b"k", b"v")
    store.close()
    store = CacheStore(tmp_path / "c", policies=POLICIES)
    try:  # the same boot: a restarted process finds what was committed
        assert store.get("w", b"k") == b"v"
    finally:
        store.close()
    monkeypatch.setattr(store_module, "_boot_id", lambda: b"boot-2")
    store = CacheStore(tmp_path / "c", policies=POLICIES)
    try:
        assert store.get("w", b"k") is None and store.namespaces() == ["w"]
        store.set("w", b"k", b"again")
        store.flush().result(10)
    finally:
        store.close()
    store = CacheStore(tmp_path / "c", policies=POLICIES)  # boot-2 again: kept
    try:
        assert store.get("w", b"k") == b"again"
    finally:
        store.close()
