"""moveDirectory on MariaDB: how long the online split of a populated subtree takes, and
the p99 of ls/stat on that subtree before and during it (issue 18: goal p99 during <= 3x
before), measured over TLS against a real jcentral from another process.

    python bench/bench_split.py [--scale 1.0] [--server mysql://root:@127.0.0.1:3306]

A subtree of 1M entries * scale (directories of 1,000 files) in the root LFN table, two
catalogue hosts (two databases of the server); a load process asks, one request at a time,
`stat` of a random file and `ls -l` of a random directory of the subtree (1,000 entries)
and notes each latency; the bench asks moveDirectory (to host 1) once the
"before" window is measured. Skips with one line when no MariaDB answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jalien.catalogue.model import Entry  # noqa: E402

BASE = "/alice/big/"
PER_DIR = 1000


def entry(d: str, name: str, i: int, kind: str = "f") -> Entry:
    return Entry(
        d, name, kind, "755", "jdoe", "jdoe", 1_000_000 + i, 1_714_564_800_000 + i,
        f"{i:032x}", f"{i:08x}-1234-11ef-8000-0242ac120002" if kind == "f" else "", 0,
    )  # fmt: skip


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


async def load(port: int, globus: Path, ca: Path, dirs: int, until: Path, out: Path) -> None:
    """The load process: stat and ls on the subtree until *until* exists; latencies to *out*."""
    from jalien.auth.tls import context_from_pem
    from jalien.net.client import Client

    context = context_from_pem(
        "client", (globus / "usercert.pem").read_bytes(), (globus / "userkey.pem").read_bytes(), ca
    )
    client = Client("127.0.0.1", port, context, reconnect=False)
    await client.connect()
    await client.call("stat", BASE, timeout=60)
    (until.parent / "ready").touch()
    samples: list[tuple[float, str, float, int]] = []
    rng = random.Random(1)
    while not until.exists():
        d = rng.randrange(dirs)
        if rng.random() < 0.5:
            words = ("stat", f"{BASE}d{d:05d}/f{rng.randrange(PER_DIR):05d}")
        else:
            words = ("ls", "-l", f"{BASE}d{d:05d}/")
        t0 = time.perf_counter()
        reply = await client.call(*words, timeout=60)
        samples.append((time.time(), words[0], time.perf_counter() - t0, reply.exitcode))
    await client.close()
    out.write_text(json.dumps(samples))


async def populate(dsns: list[str], n: int) -> None:
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    backend = MariaDBBackend(MariaDBConfig(hosts=dsns))
    await backend.start()
    try:
        await backend.insert([entry("/", "alice", 0, "d"), entry("/alice/", "big", 0, "d")])
        dirs = max(1, n // PER_DIR)
        await backend.insert([entry(BASE, f"d{d:05d}", d, "d") for d in range(dirs)])
        for d in range(dirs):
            await backend.insert(
                [entry(f"{BASE}d{d:05d}/", f"f{i:05d}", d * PER_DIR + i) for i in range(PER_DIR)]
            )
    finally:
        await backend.close()


def wait_for(path: Path, text: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"jcentral did not start:\n{path.read_text()[-2000:]}")
        time.sleep(0.1)


async def main(scale: float, server: str) -> None:
    try:
        from jalien.sqlstore.mysql import connect, parse_dsn

        connect(parse_dsn(server.rstrip("/") + "/mysql")).close()
    except Exception as exc:
        print(f"bench_split: skipped: no MariaDB at {server} ({exc})")
        return
    n = max(2 * PER_DIR, int(1_000_000 * scale))
    dirs = n // PER_DIR
    window = max(1.0, 10.0 * min(1.0, scale * 10))  # the "before" window, seconds
    databases = [f"jalien_bench_split_{os.getpid()}_{i}" for i in (1, 2)]
    admin = connect(parse_dsn(server.rstrip("/") + "/mysql"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-split-"))
    proc = loader = None
    try:
        for db in databases:
            admin.cursor().execute(f"CREATE DATABASE {db}")
        dsns = [f"{server.rstrip('/')}/{db}" for db in databases]
        t0 = time.perf_counter()
        await populate(dsns, dirs * PER_DIR)
        print(
            f"== moveDirectory of a {dirs * PER_DIR:,}-entry subtree ({dirs} directories) to "
            f"another catalogue host (populated in {time.perf_counter() - t0:.0f} s)"
        )
        home, globus = tmp / "home", tmp / "globus"
        jalien = [sys.executable, "-m", "jalien"]
        subprocess.run(
            [*jalien, "setup", "--home", str(home), "--globus-dir", str(globus),
             "--no-password", "--login", "jdoe"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        config = tmp / "jalien.toml"
        config.write_text(
            'catalogue_backend = "mariadb"\n[catalogue_mariadb]\n'
            f"hosts = {json.dumps(dsns)}\nindex_ttl = 1.0\n"
        )
        from tests.integration.conftest import free_port  # a port free on both stacks

        port = free_port()
        log = tmp / "jcentral.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*jalien, "--role", "jcentral", "--home", str(home),
                 "--ws-port", str(free_port()), "--binary-port", str(port)],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "JALIEN_CONFIG": str(config), "JALIEN_CACHE_HTTP_PORT": "-1",
                     "JALIEN_WORKERS": "1"},  # one process, as measured before --workers
            )  # fmt: skip
        wait_for(log, "jcentral ready", proc)
        stop_file, samples_file = tmp / "stop", tmp / "samples.json"
        loader = subprocess.Popen(
            [sys.executable, __file__, "--load", str(port), str(globus), str(home / "certificates"),
             str(dirs), str(stop_file), str(samples_file)],
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not (tmp / "ready").exists():  # the load process is connected
            if loader.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the load process did not start")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0 + window)  # warm-up, then the "before" window
        from jalien.auth.tls import context_from_pem
        from jalien.net.client import Client

        context = context_from_pem(
            "client",
            (globus / "usercert.pem").read_bytes(),
            (globus / "userkey.pem").read_bytes(),
            home / "certificates",
        )
        client = Client("127.0.0.1", port, context, reconnect=False)
        await client.connect()
        began = time.time()
        reply = await client.call("moveDirectory", BASE, "1", timeout=3600)
        ended = time.time()
        await client.close()
        await asyncio.sleep(1.0)
        stop_file.touch()
        loader.wait(120)
        samples = json.loads(samples_file.read_text())
        if reply.exitcode:
            print(f"  moveDirectory failed: {reply.error}")
            return
        print(f"  {reply.results[0]['message']}")
        print(f"  moveDirectory answered after {ended - began:.1f} s (index_ttl 1 s included)")
        failed = sum(1 for s in samples if s[3])
        for what in ("stat", "ls"):
            before = [s[2] for s in samples if s[1] == what and began - window - 1 <= s[0] < began]
            during = [s[2] for s in samples if s[1] == what and began <= s[0] <= ended]
            ratio = p99(during) / p99(before) if before and during else float("nan")
            print(
                f"  {what:4s} p99 before {p99(before) * 1e3:7.1f} ms ({len(before)} requests)   "
                f"during {p99(during) * 1e3:7.1f} ms ({len(during)})   ratio {ratio:4.1f}x   "
                "goal <= 3x"
            )
        print(f"  requests that failed: {failed} of {len(samples)}")
    finally:
        for p in (loader, proc):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(30)
        for db in databases:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, globus, ca, dirs, until, out = sys.argv[2:8]
        asyncio.run(load(int(port), Path(globus), Path(ca), int(dirs), Path(until), Path(out)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1M entries * scale")
    parser.add_argument("--server", default="mysql://root:@127.0.0.1:3306")
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.server))
