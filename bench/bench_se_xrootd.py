"""The embedded SE serving XRootD against Debian's xrootd server, one run, same files, same
client (xrdcp), same parallelism.

    python bench/bench_se_xrootd.py [--scale 1.0] [--rounds 3]

Scale 1: 2 x 1 GB files read each alone (``xrdcp URL /dev/null``: the server's large-read
path, sendfile for ours) and 1,000 x 1 MB files read by one ``xrdcp --parallel N`` at N = 1
and 32 (open, read, close per file: the per-request cost). ``--scale 0.001``: 2 x 2 MB and
20 x 1 MB, a few seconds. Both servers run as separate processes on loopback over plain TCP
(XRootD here is not TLS): ``jalien-bin --role se`` with se_xrootd_port, and xrootd started
as in the tests (tests/storage/xrootd_server.py), its data the same files (hard links). Each
figure is the median of the rounds; the servers take turns first in each round. Goals
(issue 16): large reads >= 0.8x xrootd's rate, 1 MB files >= 0.5x its files/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.*: the same servers and credentials as the tests

from jalien.storage.envelope import EnvelopeSigner, Grant  # noqa: E402
from tests.gridpki import make_grid_pki  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.storage.xrootd_server import XRootDUnavailable, start_xrootd  # noqa: E402

MB = 1_000_000
GB = 1_000_000_000
ENV = {**os.environ, "XRD_CONNECTIONRETRY": "1", "RES_OPTIONS": "timeout:1 attempts:2"}


def make_file(path: Path, size: int, block: bytes, tag: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(f"{tag:016d}".encode())
        left = size - 16
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)


class JalienSE:
    """``jalien-bin --role se`` with its XRootD listener, envelopes signed here."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "jalien-se"
        self.signer, _ = EnvelopeSigner.load_or_create(tmp / "home" / "envelope")
        pki = make_grid_pki(tmp / "pki")
        self.port = free_port()
        self.log = tmp / "se.log"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "JALIEN_SE_ROOT": str(self.root),
            "JALIEN_SE_PORT": str(free_port()),
            "JALIEN_SE_XROOTD_PORT": str(self.port),
            "JALIEN_HOST_CERT": str(pki.host_cert),
            "JALIEN_HOST_KEY": str(pki.host_key),
            "JALIEN_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "jalien", "--role", "se", "--home", str(tmp / "home")]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--listen", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 120
        while "se xrootd ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SE did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def url(self, pfn: str) -> str:
        envelope = self.signer.sign(Grant(access="read", pfn=pfn))
        return f"root://127.0.0.1:{self.port}/{pfn}?xrd.wantprot=unix&authz={envelope}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def read_alone(urls: list[str]) -> float:
    """Seconds to read each URL alone into /dev/null (xrdcp's own chunking)."""
    t0 = time.perf_counter()
    for url in urls:
        subprocess.run(
            ["xrdcp", "--nopbar", "--force", url, "/dev/null"],
            check=True, capture_output=True, env=ENV, timeout=3600,
        )  # fmt: skip
    return time.perf_counter() - t0


def read_many(urls: list[str], dest: Path, parallel: int) -> float:
    """Seconds for one ``xrdcp --parallel N --infiles`` of all *urls* into *dest*."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    listing = dest.parent / f"{dest.name}.txt"
    listing.write_text("\n".join(urls) + "\n")
    t0 = time.perf_counter()
    subprocess.run(
        ["xrdcp", "--nopbar", "--force", "--parallel", str(parallel), "--infiles", str(listing),
         f"{dest}/"],
        check=True, capture_output=True, env=ENV, timeout=3600,
    )  # fmt: skip
    took = time.perf_counter() - t0
    got = len(list(dest.iterdir()))
    if got != len(urls):
        raise RuntimeError(f"xrdcp wrote {got} of {len(urls)} files")
    return took


def run(scale: float, rounds: int, tmp: Path) -> int:
    large_size = max(2 * MB, int(GB * scale))
    large_n, small_n = 2, max(20, int(1000 * scale))
    try:
        xrootd = start_xrootd("bench")
    except XRootDUnavailable as exc:
        print(f"bench_se_xrootd: no xrootd to compare with ({exc}); nothing measured")
        return 0
    se = JalienSE(tmp)
    try:
        block = os.urandom(4 * MB)
        large = [f"/se/00/00000/large{i}" for i in range(large_n)]
        small = [f"/se/{i % 16:02d}/00001/small{i:05d}" for i in range(small_n)]
        for i, pfn in enumerate(large + small):
            ours = se.root / pfn.lstrip("/")
            make_file(ours, large_size if pfn in large else MB, block, i)
            theirs = xrootd.data / pfn.lstrip("/")
            theirs.parent.mkdir(parents=True, exist_ok=True)
            os.link(ours, theirs)  # the same bytes, the same page cache
        for path in xrootd.data.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        servers = {
            "embedded SE": lambda pfn: se.url(pfn),
            "xrootd": lambda pfn: f"root://127.0.0.1:{xrootd.port}/{pfn}?xrd.wantprot=unix",
        }
        read_alone([servers["xrootd"](p) for p in large])  # warm the page cache
        print(
            f"bench_se_xrootd: scale {scale}: {large_n} x {large_size / MB:.0f} MB read alone, "
            f"{small_n} x 1 MB by one xrdcp; {rounds} rounds, median; loadavg "
            f"{os.getloadavg()[0]:.1f} at start"
        )
        results: dict[tuple[str, str], list[float]] = {}
        order = list(servers)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                url = servers[name]
                took = read_alone([url(p) for p in large])
                results.setdefault(("large", name), []).append(large_n * large_size / MB / took)
                for parallel in (1, 32):
                    took = read_many([url(p) for p in small], tmp / "dest", parallel)
                    results.setdefault((f"small{parallel}", name), []).append(small_n / took)
        figures = {key: statistics.median(values) for key, values in results.items()}
        rows = [("large", "MB/s", 0.8), ("small1", "files/s", 0.5), ("small32", "files/s", 0.5)]
        labels = {
            "large": "large reads",
            "small1": "1 MB files -T 1",
            "small32": "1 MB files -T 32",
        }
        for key, unit, goal in rows:
            ours, theirs = figures[(key, "embedded SE")], figures[(key, "xrootd")]
            ratio = ours / theirs if theirs else 0.0
            mark = "ok" if ratio >= goal else "BELOW GOAL"
            print(
                f"  {labels[key]:<18} embedded SE {ours:9.1f} {unit:<8} xrootd {theirs:9.1f} "
                f"{unit:<8} ratio {ratio:4.2f} (goal >= {goal}) {mark}"
            )
    finally:
        se.stop()
        xrootd.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("xrdcp"):
        print("bench_se_xrootd: xrdcp missing (apt install xrootd-client); nothing measured")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-se-xrootd-", dir="/tmp") as tmp:
        return run(args.scale, max(1, args.rounds), Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
