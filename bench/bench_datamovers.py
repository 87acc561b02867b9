"""Data movers benchmark: deletions/s and transfers/s of a real jcentral (embedded HTTPS SE)
and a real XRootD SE (Debian's xrootd, as in the tests), driven over TLS from this process.

    python bench/bench_datamovers.py [--scale 1.0] [--rounds 3]

Each round: N small files (10 kB) uploaded to the embedded SE, ``mirror`` of their directory
to the XRootD SE (HTTPS -> XRootD, streamed through jcentral: transfers/s from the mirror
command to the last DONE), then ``rm -r`` of the directory (deletions/s: 2N PFNs, from the rm
to the last file gone from both SEs' disks). Scale 1: N = 500; ``--scale 0.001``: N = 5.
Baselines in the same run, like for like: the same number of DELETEs sent straight to the
embedded SE by this process with jcentral's envelopes (16 at once: the SE's own rate), and
raw ``xrdcp`` of the same files to the XRootD SE (one process per file, 8 at once).
Goals: deletions >= 100 PFNs/s (a grid removing 10M files a day needs ~115/s); transfers of
small files at >= 0.8x the raw xrdcp rate at the same concurrency (each copy of a small file
is a process and connection set-up: a latency figure, not a bandwidth one; large files go at
the SEs' or the link's rate)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests' helpers: the same servers as the tests

import aiohttp  # noqa: E402

from jalien.auth.tls import client_context  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from jalien.storage.cp import Options, copy  # noqa: E402
from jalien.storage.envelope import DELETE, EnvelopeSigner, Grant, pfn_path  # noqa: E402
from tests.integration.conftest import free_port, run_setup, start_central, stop  # noqa: E402
from tests.storage.xrootd_server import XRootDUnavailable, start_xrootd  # noqa: E402

LOCAL, XRD = "ALICE::LOCAL::SE", "ALICE::BENCH::XRD"
SIZE = 10_000


class Grid:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)
        assert done.returncode == 0, done.stderr
        self.xrd = None
        try:
            self.xrd = start_xrootd("bench")
        except XRootDUnavailable as exc:
            print(f"no XRootD SE ({exc}): transfers are not measured")
        self.ws, self.binary = free_port(), free_port()
        env = {
            "JALIEN_EMBEDDED_SE": "1",
            "JALIEN_SE_NAME": LOCAL,
            "JALIEN_SE_PORT": str(free_port()),
            "JALIEN_CACHE_HTTP_PORT": "-1",
            "JALIEN_DELETION_INTERVAL": "1",
            "JALIEN_TRANSFER_INTERVAL": "1",
            "JALIEN_TRANSFER_PER_SE": "8",
        }
        self.proc = start_central(self.home, tmp / "jcentral.log", self.ws, self.binary, env)

    def close(self) -> None:
        stop(self.proc)
        if self.xrd is not None:
            self.xrd.close()

    def client_ssl(self) -> ssl.SSLContext:
        return client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.home / "certificates"
        )

    def se_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(capath=str(self.home / "certificates"))
        ctx.check_hostname = False
        return ctx


def files_on_disk(grid: Grid) -> int:
    roots = [grid.home / "se"] + ([grid.xrd.data] if grid.xrd is not None else [])
    return sum(1 for root in roots for p in root.rglob("*") if p.is_file())


async def until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the data movers did not finish in time")
        await asyncio.sleep(0.02)


async def upload(grid: Grid, central: Client, src: Path, folder: str, n: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"f{i:05d}").write_bytes(os.urandom(SIZE))
    up = await copy(central, [f"file:{src}/*"], f"{folder}/", Options(ssl=grid.se_ssl(), threads=8))
    assert up.exitcode == 0, [r.error for r in up.results if r.error][:3]


async def one_round(grid: Grid, central: Client, n: int, k: int) -> tuple[float, float, int]:
    folder = f"bench{k}"
    await upload(grid, central, grid.tmp / f"src{k}", folder, n)
    transfers_s = 0.0
    if grid.xrd is not None:
        start = time.perf_counter()
        queued = await central.call("mirror", folder, XRD)
        assert queued.exitcode == 0, queued.error
        ids = {r["transferId"] for r in queued.results if "transferId" in r}

        async def done() -> bool:
            listed = await central.call("listTransfer", "-status", "DONE")
            return ids <= {r["transferId"] for r in listed.results if "transferId" in r}

        await until(done, 60 + n)
        transfers_s = n / (time.perf_counter() - start)
    pfns = files_on_disk(grid)
    start = time.perf_counter()
    removed = await central.call("rm", "-r", folder)
    assert removed.exitcode == 0, removed.error

    async def empty() -> bool:
        return files_on_disk(grid) == 0

    await until(empty, 60 + n)
    return pfns / (time.perf_counter() - start), transfers_s, pfns


async def raw_deletes(grid: Grid, central: Client, n: int) -> float:
    """The embedded SE's own rate: DELETEs straight from here, 16 at once."""
    await upload(grid, central, grid.tmp / "rawdel", "rawdel", n)
    where = []
    for i in range(n):
        reply = await central.call("whereis", f"rawdel/f{i:05d}")
        where += [r["pfn"] for r in reply.results if r.get("pfn")]
    signer, _ = EnvelopeSigner.load_or_create(grid.home / "envelope")
    slots = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=grid.se_ssl())) as http:

        async def one(pfn: str) -> None:
            env = signer.sign(Grant(access=DELETE, pfn=pfn_path(pfn), turl=pfn, se=LOCAL))
            async with slots, http.delete(f"{pfn}?authz={env}") as resp:
                assert resp.status in (204, 404), resp.status

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in where))
        rate = len(where) / (time.perf_counter() - start)
    await central.call("rm", "-r", "rawdel")  # the rows; their files are gone already
    return rate


def raw_xrdcp(grid: Grid, n: int) -> float:
    """Raw xrdcp of n local files to the XRootD SE, one process per file, 8 at once."""
    if grid.xrd is None or not shutil.which("xrdcp"):
        return 0.0
    src = grid.tmp / "rawxrd"
    src.mkdir(exist_ok=True)
    for i in range(n):
        (src / f"r{i}").write_bytes(os.urandom(SIZE))
    start = time.perf_counter()
    procs: list[subprocess.Popen] = []
    for i in range(n):
        if len(procs) >= 8:
            procs.pop(0).wait()
        dst = f"{grid.xrd.url}/raw/r{i}"
        procs.append(subprocess.Popen(["xrdcp", "-s", "-f", str(src / f"r{i}"), dst]))
    for p in procs:
        p.wait()
    return n / (time.perf_counter() - start)


async def main(scale: float, rounds: int) -> None:
    n = max(5, int(500 * scale))
    with tempfile.TemporaryDirectory(prefix="jalien-bench-movers-") as tmp:
        grid = Grid(Path(tmp))
        try:
            central = Client("127.0.0.1", grid.binary, grid.client_ssl(), reconnect=False)
            await central.connect()
            if grid.xrd is not None:
                added = await central.call("addSE", "-qos", "disk", XRD, grid.xrd.url)
                assert added.exitcode == 0, added.error
            results = [await one_round(grid, central, n, k) for k in range(rounds)]
            raw_del = await raw_deletes(grid, central, n)
            raw_cp = await asyncio.to_thread(raw_xrdcp, grid, n)
            await central.close()
        finally:
            grid.close()
    dels = statistics.median(r[0] for r in results)
    trs = statistics.median(r[1] for r in results)
    print(f"files per round: {n} of {SIZE} bytes, {results[0][2]} PFNs removed per round")
    print(f"deletions (rm -r -> gone from the SEs): {dels:8.1f} PFNs/s  (goal >= 100)")
    print(f"  baseline: DELETEs straight to the embedded SE, 16 at once: {raw_del:8.1f}/s")
    if grid.xrd is not None:
        goal = "goal >= 0.8x raw"
        print(f"transfers (mirror HTTPS -> XRootD, to DONE): {trs:8.1f} files/s  ({goal})")
        print(f"  baseline: raw xrdcp local -> XRootD, 8 at once: {raw_cp:8.1f} files/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.rounds))
