"""kill -9 of a process in the middle of its writes (real subprocesses): the store reopens
with every index consistent, every value whole, and takes writes again."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

from jalien.cache.store import CacheStore, Policy

WRITER = textwrap.dedent(
    """
    import hashlib, os, sys
    from jalien.cache.store import CacheStore, Policy

    def value(key):
        return hashlib.sha256(key).digest() * (1 + key[-1] % 200)  # 32 B .. 6.4 KB

    store = CacheStore(sys.argv[1], policies={"crash": Policy(max_entries=3000)})
    rounds = 0
    while True:
        for i in range(500):
            n = (rounds * 500 + i) * 7919 % 20000
            key = b"key-%d" % n
            store.set("crash", key, value(key), scope="/alice/d%d/f%d" % (n % 13, n))
            if i % 50 == 0:
                store.delete("crash", b"key-%d" % ((n * 31) % 20000))
            if i % 97 == 0:
                store.invalidate("/alice/d%d" % (i % 13))
        store.flush().result(30)
        rounds += 1
        print("committed", rounds, flush=True)
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    from jalien.cache.store import CacheStore
    store = CacheStore(sys.argv[1], readonly=True)
    store.get("crash", b"key-1")  # a read transaction stays open in this reader slot
    print("reading", flush=True)
    time.sleep(600)
    """
)


def _value(key: bytes) -> bytes:
    return hashlib.sha256(key).digest() * (1 + key[-1] % 200)


def _start(script: str, path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(proc: subprocess.Popen[bytes], word: bytes, count: int = 1) -> None:
    seen = 0
    deadline = time.monotonic() + 120
    while seen < count:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the child exited with {proc.wait()} before {word!r}"
        seen += line.startswith(word)
        assert time.monotonic() < deadline


def test_kill_9_during_writes_leaves_nothing_corrupted(tmp_path):
    path = tmp_path / "cache"
    for round_ in range(3):
        reader = _start(READER, path) if round_ == 1 else None
        writer = _start(WRITER, path)
        try:
            _wait_for(writer, b"committed", 2)
            if reader is not None:
                _wait_for(reader, b"reading")
            time.sleep(0.05 * round_)  # somewhere in the middle of a group commit
            writer.send_signal(signal.SIGKILL)
            assert writer.wait(30) == -signal.SIGKILL
            if reader is not None:
                reader.send_signal(signal.SIGKILL)  # its reader slot is left behind
                reader.wait(30)
        finally:
            for proc in (writer, reader):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        store = CacheStore(path, policies={"crash": Policy(max_entries=3000)}, writer=False)
        try:
            assert store.check() == []
            stats = store.stats()
            assert stats and 0 < stats[0].entries <= 3000 and stats[0].name == "crash"
            for key, _size, _expires, value in store.entries("crash", 100_000, values=True):
                assert value == _value(key), f"value of {key!r} is damaged"
            store.set("restarted", b"after", b"restart")
            store.run_once()
            assert store.get("restarted", b"after") == b"restart"
            assert store.check() == []
        finally:
            store.close()
