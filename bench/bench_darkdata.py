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
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from jalien._fast import sandwich_py
from jalien.datamovers import darkdata
from jalien.datamovers.extsort import DiskSorter

try:
    from jalien._fast import sandwich_c
except ImportError:
    sandwich_c = None  # type: ignore[assignment]

GOAL = 1_000_000


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


if __name__ == "__main__":
    main()
