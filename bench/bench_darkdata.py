"""The dark-data compare: entries/s of the sandwich merge per core, each twin, against the
issue's goal of 1M entries/s, and the external sort that feeds it.

    python bench/bench_darkdata.py [--scale 1.0] [--rounds 5]

An SE of N files (N = 2M * scale; AliEn PFN paths /se/NN/NNNNN/<guid>) with 0.1% dark and
0.1% lost, the catalogue dumps and the listing written sorted to files first; one round is
``darkdata._merge`` on those files (as a crawl does: read in batches from disk, findings
written to files), single-threaded. "entries" are the keys read from the three streams
(3 per file); a figure per SE file is given beside it. Median of rounds.
The sort line is ``extsort.DiskSorter`` on the unsorted listing (runs of 500k keys spilled
to disk, then merged): the cost of a crawl's sorting, for scale.

End to end (``--e2e-files``, default 100k * scale): a real embedded SE process
(``jalien-bin --role se``) holding that many files, listed over TLS with central's list
envelope from this process (files/s), and a whole crawl (``DarkDataCrawler.crawl``: two
catalogue dumps from memory, the listing, three on-disk sorts, the merge; files/s of SE,
and CPU seconds of this process), median of rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jalien._fast import sandwich_py
from jalien.datamovers import darkdata
from jalien.datamovers.extsort import DiskSorter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.ports
from tests.ports import free_port

try:
    from jalien._fast import sandwich_c
except ImportError:
    sandwich_c = None  # type: ignore[assignment]

GOAL = 1_000_000
SE_NAME, SE_URL_PATH = "ALICE::BENCH::SE", "/se"


class _Catalogue:
    """The catalogue's replicas on the SE, from memory (the SE side is what is measured)."""

    def __init__(self, url: str, pfns: list[str]) -> None:
        from jalien.datamovers.lifecycle_ports import SeInfo

        self.se = SeInfo(name=SE_NAME, url=url, qos=["disk"])
        self.pfns = pfns

    async def ses(self):
        return [self.se]

    async def replicas_on(self, se):
        from jalien.datamovers.model import PfnRef

        for i in range(0, len(self.pfns), 5000):
            yield [PfnRef(guid="", se=se, pfn=p) for p in self.pfns[i : i + 5000]]


def e2e(files: int, rounds: int, work: Path) -> None:
    from jalien.datamovers.darkdata import DarkDataCrawler
    from jalien.datamovers.lifecycle_store import LifecycleStore
    from jalien.storage.envelope import EnvelopeSigner
    from jalien.storage.se_listing import SeLister

    home, globus = work / "home", work / "globus"
    done = subprocess.run(
        [sys.executable, "-m", "jalien", "setup", "--home", str(home), "--globus-dir",
         str(globus), "--no-password", "--login", "bench"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"setup failed: {done.stderr}")
    signer, _ = EnvelopeSigner.load_or_create(home / "envelope")
    root = work / "seroot"
    rng = random.Random(11)
    pfns = []
    for _ in range(files):
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=1))
        h = rng.getrandbits(32)
        rel = f"se/{h % 16:02d}/{(h >> 8) % 100000:05d}/{guid}"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        pfns.append("/" + rel)
    port = free_port()
    url = f"https://127.0.0.1:{port}{SE_URL_PATH}"
    log = work / "se.log"
    env = {**os.environ, "JALIEN_SE_ROOT": str(root), "JALIEN_SE_PORT": str(port)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jalien", "--role", "se", "--home", str(home), "--listen",
             "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "se ready" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the SE did not start:\n{log.read_text()}")
            time.sleep(0.05)
        lister = SeLister(signer, str(home / "certificates"))
        dark_cut = max(1, files // 1000)
        catalogue = _Catalogue(url, [f"{url}{p[3:]}" for p in pfns[dark_cut:]])

        async def listing() -> int:
            n = 0
            async for batch in lister.listing(SE_NAME, url):
                n += len(batch)
            return n

        async def crawl(i: int):
            store = LifecycleStore(work / f"lifecycle{i}.db")
            await store.start()
            try:
                crawler = DarkDataCrawler(catalogue, lister, store, _no_delete, work / "crawl")
                return await crawler.crawl(SE_NAME)
            finally:
                await store.close()

        list_rates, crawl_rates, cpus = [], [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            n = asyncio.run(listing())
            list_rates.append(n / (time.perf_counter() - t0))
            assert n == files, (n, files)
            t0, c0 = time.perf_counter(), time.process_time()
            report = asyncio.run(crawl(i))
            crawl_rates.append(files / (time.perf_counter() - t0))
            cpus.append(time.process_time() - c0)
            assert report.dark == dark_cut and report.lost == 0, report
        print(
            f"e2e, embedded SE process of {files} files over TLS: listing "
            f"{statistics.median(list_rates) / 1e3:7.1f} k files/s; whole crawl (2 dumps, "
            f"listing, 3 sorts, merge) {statistics.median(crawl_rates) / 1e3:7.1f} k files/s "
            f"({statistics.median(cpus):.2f} s CPU of central's side)"
        )
    finally:
        proc.terminate()
        proc.wait(30)


async def _no_delete(refs):
    return []


def make(n: int, work: Path) -> tuple[Path, Path, Path, list[bytes], int, int]:
    rng = random.Random(7)
    keys = []
    for _ in range(n):
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=1))
        h = rng.getrandbits(32)
        keys.append(f"/se/{h % 16:02d}/{(h >> 8) % 100000:05d}/{guid}\n".encode())
    keys.sort()
    dark = set(rng.sample(range(n), n // 1000))
    lost = set(rng.sample(range(n), n // 1000)) - dark
    catalogue = [k for i, k in enumerate(keys) if i not in dark]
    listing = [k for i, k in enumerate(keys) if i not in lost]
    paths = (work / "first", work / "listing", work / "second")
    for path, lines in zip(paths, (catalogue, listing, catalogue), strict=True):
        path.write_bytes(b"".join(lines))
    unsorted = listing[:]
    rng.shuffle(unsorted)
    return *paths, unsorted, len(dark), len(lost)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="SE files = 2M * scale")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--e2e-files", type=int, default=-1, help="0: no end-to-end part")
    args = parser.parse_args()
    n = max(1000, int(2_000_000 * args.scale))
    rounds = max(1, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-darkdata-") as tmp:
        work = Path(tmp)
        first, listing, second, unsorted, want_dark, want_lost = make(n, work)
        print(f"SE of {n} files ({want_dark} dark, {want_lost} lost), {rounds} rounds, 1 core")
        twins = [("python", sandwich_py)] + ([("cython", sandwich_c)] if sandwich_c else [])
        for name, impl in twins:
            rates = []
            for _ in range(rounds):
                t0 = time.process_time()
                counts = darkdata._merge(first, listing, second, work, impl)  # the crawl's own
                cpu = time.process_time() - t0
                rates.append(sum(counts) / cpu)
                found = (work / "dark").read_bytes().count(b"\n")
                assert found == want_dark, (found, want_dark)
                assert (work / "lost").read_bytes().count(b"\n") == want_lost
            rate = statistics.median(rates)
            print(
                f"merge {name:6s}: {rate / 1e6:6.2f} M entries/s per core "
                f"({rate / 3 / 1e6:5.2f} M SE files/s; goal {GOAL / 1e6:.0f} M entries/s: "
                f"{'met' if rate >= GOAL else 'NOT met'}, x{rate / GOAL:.1f})"
            )
        t0 = time.process_time()
        sorter = DiskSorter(work, "sort", 500_000)
        for i in range(0, len(unsorted), 4096):
            sorter.add(unsorted[i : i + 4096])
        sorter.finish(work / "sorted")
        cpu = time.process_time() - t0
        assert (work / "sorted").read_bytes() == listing.read_bytes()
        print(f"external sort of the listing: {len(unsorted) / cpu / 1e6:5.2f} M keys/s per core")
        files = args.e2e_files if args.e2e_files >= 0 else max(100, int(100_000 * args.scale))
        if files:
            e2e(files, min(rounds, 3), work)


if __name__ == "__main__":
    main()
