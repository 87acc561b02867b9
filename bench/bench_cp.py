"""cp benchmark, one run: downloads with ``cp -T 1/32`` from the embedded SE over XRootD
and from Debian's xrootd, against raw ``xrdcp`` of the same replicas with the same
parallelism, measured in the same run; the median of ``--rounds`` rounds each.

    python bench/bench_cp.py [--scale 1.0] [--threads 1,32] [--rounds 3] [--https]

Scale 1: 1,000 x 1 MB files and 3 x 1 GB files (``--scale 0.001``: 20 x 1 MB and 3 x 2 MB,
a few seconds). The copy engine (jalien.storage.cp: XRootD in process through the client
library) runs here against a jcentral process whose embedded SE serves XRootD beside HTTPS
(registered with its root:// URL), and an xrootd started as in the tests
(tests/storage/xrootd_server.py; without xrootd one line says so). Baselines: raw xrdcp of
the same replicas, ``--parallel T`` (T = cp's -T, at most the number of files) over all of
them in one process, with ``--cksum md5`` (cp checks every file's md5 too); a plain local
copy. ``--https`` also measures the embedded SE's HTTPS side (registered as its own SE).
Targets (issue 16): 1 MB files >= 150 files/s at -T 1 and >= 400 at -T 32 from both SEs;
large files >= 0.9x raw xrdcp; the embedded SE against Debian's xrootd (A's part): large
reads >= 0.8x, 1 MB files >= 0.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.storage.xrootd_server: the same server as the tests

from jalien.auth.tls import client_context  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from jalien.storage.cp import Options, copy  # noqa: E402
from jalien.storage.xrd import transfer_url  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.storage.xrootd_server import XRootDUnavailable, start_xrootd  # noqa: E402

NEAR, XRD, WEB = "ALICE::LOCAL::SE", "ALICE::LOCAL::XRD", "ALICE::LOCAL::WEB"
MB = 1_000_000


def jalien(*args: str) -> list[str]:
    return [sys.executable, "-m", "jalien", *args]


def make_files(folder: Path, count: int, size: int, tag: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 4 * MB))
    out = []
    for i in range(count):
        path = folder / f"{tag}{i:05d}.bin"
        with open(path, "wb") as fh:
            left = size - 16
            fh.write(f"{tag}{i:014d}".encode()[:16].ljust(16, b"."))  # every file differs
            while left > 0:
                fh.write(block[: min(left, len(block))])
                left -= len(block)
        out.append(path)
    return out


class Central:
    """jcentral with its embedded SE, in a scratch home."""

    def __init__(self, tmp: Path) -> None:
        self.home, globus = tmp / "home", tmp / "globus"
        subprocess.run(
            jalien("setup", "--home", str(self.home), "--globus-dir", str(globus),
                   "--no-password", "--login", "jdoe"),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.binary = free_port()
        self.log = tmp / "jcentral.log"
        self.se_port = free_port()
        env = {**os.environ, "JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_NAME": NEAR,
               "JALIEN_SE_PORT": str(self.se_port), "PYTHONUNBUFFERED": "1",
               "JALIEN_SE_XROOTD_PORT": str(free_port()), "JALIEN_WORKERS": "1"}  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                jalien("--role", "jcentral", "--home", str(self.home), "--listen", "127.0.0.1",
                       "--ws-port", str(free_port()), "--binary-port", str(self.binary)),
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while "jcentral ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jcentral did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.user = client_context(
            globus / "usercert.pem", globus / "userkey.pem", self.home / "certificates"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def local_copy(files: list[Path], dest: Path, threads: int) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda f: shutil.copyfile(f, dest / f.name), files))
    return time.perf_counter() - t0


def raw_xrdcp(urls: list[str], dest: Path, parallel: int) -> float:
    """One xrdcp for all *urls* into *dest* with ``--parallel``, as a user would, each file's
    md5 checked end to end (``--cksum md5``: the SE's against the one computed locally)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    listing = dest.parent / "xrdcp-infiles.txt"
    listing.write_text("\n".join(urls) + "\n")
    t0 = time.perf_counter()
    done = subprocess.run(
        ["xrdcp", "--nopbar", "--force", "--parallel", str(parallel), "--infiles", str(listing),
         "--cksum", "md5", f"{dest}/"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:  # said, and left out of the figure (NaN)
        last = " | ".join(done.stderr.strip().splitlines()[-2:])
        print(f"  NOTE raw xrdcp --parallel {parallel} exited {done.returncode}: {last[:300]}")
        return float("nan")
    return time.perf_counter() - t0


def median_rate(amount: float, runs: list[float]) -> float:
    """*amount* (files or MB) per second, the median of the rounds' times (NaN: a failed
    round, left out; all failed: NaN)."""
    good = [r for r in runs if r == r]
    return amount / statistics.median(good) if good else float("nan")


async def grid_copy(client, pattern: str, dest: Path, threads: int, ssl) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    report = await copy(client, [pattern], f"file:{dest}/", Options(threads=threads, ssl=ssl))
    seconds = time.perf_counter() - t0
    if report.exitcode != 0:
        errors = [r.error for r in report.results if r.status == "failed"][:3]
        raise RuntimeError(f"cp {pattern} failed: {errors}")
    return seconds


async def upload(client, folder: Path, lfn_dir: str, se: str, ssl) -> float:
    t0 = time.perf_counter()
    report = await copy(
        client, [f"file:{folder}/*"], lfn_dir, Options(threads=32, specs=se, ssl=ssl)
    )
    seconds = time.perf_counter() - t0
    if report.exitcode != 0:  # said, then tried once more: the downloads need every file
        failed = [r for r in report.results if r.status == "failed"]
        errors = [f"{r.src}: {r.error}" for r in failed]
        print(f"  NOTE upload to {se}: {len(errors)} failed, retried: {errors[:2]}")
        for result in failed:  # a failed commit may leave the LFN without its replica
            await client.call("rm", result.dst)
        sources = [f"file:{r.src}" for r in failed]  # lfn_dir ends with "/": a directory
        again = await copy(client, sources, lfn_dir, Options(specs=se, ssl=ssl))
        if again.exitcode != 0:
            raise RuntimeError(f"upload to {se} failed twice: {errors[:3]}")
    return seconds


async def replica_urls(client, lfn_dir: str, names: list[str]) -> list[str]:
    """Each file's first replica as a URL with its envelope."""
    urls = []
    for name in names:
        rec = (await client.call("access", "read", f"{lfn_dir}{name}")).results[0]
        urls.append(transfer_url(rec["url"], rec["envelope"]))
    return urls


def verdict(value: float, goal: float) -> str:
    return f"goal >= {goal:g}: {'ok' if value >= goal else 'MISSED'}"


async def run(scale: float, threads: list[int], rounds: int, https: bool, tmp: Path) -> None:
    n_small = max(20, int(1000 * scale))
    n_large, large = 3, max(2 * MB, int(1000 * MB * scale))
    small_files = make_files(tmp / "src/small", n_small, MB, "s")
    large_files = make_files(tmp / "src/large", n_large, large, "L")
    large_mb = n_large * large / MB
    print(
        f"== cp: {n_small:,} x 1 MB files, {n_large} x {large / MB:,.0f} MB files "
        f"(scale {scale}, {os.cpu_count()} CPUs, median of {rounds} rounds)"
    )
    central = Central(tmp / "central")
    xrootd = None
    try:
        try:
            xrootd = start_xrootd("bench")
        except XRootDUnavailable as exc:
            print(f"  (no Debian xrootd: {exc}; only the embedded SE is measured)")
        ssl_ctx = __import__("ssl").create_default_context(
            capath=str(central.home / "certificates")
        )
        ssl_ctx.check_hostname = False
        client = Client("127.0.0.1", central.binary, central.user, reconnect=False)
        await client.connect()
        try:
            ses = [("embedded root", NEAR, "emb")]
            if xrootd is not None:
                await client.call("addSE", "-site", "LOCAL", "-qos", "disk", XRD, xrootd.url)
                ses.append(("Debian xrootd", XRD, "deb"))
            if https:
                web = f"https://127.0.0.1:{central.se_port}/se"
                await client.call("addSE", "-site", "LOCAL", "-qos", "web", WEB, web)
                ses.append(("embedded https", WEB, "web"))
            out = tmp / "dst"
            t_local = [local_copy(small_files, out / "local", 1) for _ in range(rounds)]
            l_local = [local_copy(large_files, out / "local-large", 1) for _ in range(rounds)]
            print(
                f"  baseline local copy            1 MB {median_rate(n_small, t_local):8,.0f}"
                f" files/s   large {median_rate(large_mb, l_local):7,.0f} MB/s"
            )
            small_rate: dict[tuple[str, int], float] = {}
            large_rate: dict[tuple[str, int], float] = {}
            for label, se, kind in ses:
                up = await upload(client, tmp / "src/small", f"b/{kind}/small/", se, ssl_ctx)
                up_l = await upload(client, tmp / "src/large", f"b/{kind}/large/", se, ssl_ctx)
                print(
                    f"  {label:<15} upload -T 32   1 MB {n_small / up:8,.0f} files/s   "
                    f"large {large_mb / up_l:7,.0f} MB/s"
                )
                urls = await replica_urls(client, f"b/{kind}/small/", [f.name for f in small_files])
                lurls = await replica_urls(
                    client, f"b/{kind}/large/", [f.name for f in large_files]
                )
                raw = kind != "web"
                for t in threads:
                    cp = [
                        await grid_copy(client, f"b/{kind}/small/*", out / "small", t, ssl_ctx)
                        for _ in range(rounds)
                    ]
                    rate = small_rate[kind, t] = median_rate(n_small, cp)
                    line = f"  {label:<15} cp -T {t:<3}     1 MB {rate:8,.0f} files/s   "
                    if raw:
                        base = [raw_xrdcp(urls, out / "raw-small", t) for _ in range(rounds)]
                        raw_rate = median_rate(n_small, base)
                        ratio = rate / raw_rate
                        line += f"raw xrdcp --parallel {t}: {raw_rate:6,.0f}/s ({ratio:4.2f}x)"
                    goal = 150 if t == 1 else 400 if t >= 32 else 0
                    print(line + (f"   {verdict(rate, goal)}" if goal else ""))
                for t in threads:
                    cp = [
                        await grid_copy(client, f"b/{kind}/large/*", out / "large", t, ssl_ctx)
                        for _ in range(rounds)
                    ]
                    rate = large_rate[kind, t] = median_rate(large_mb, cp)
                    line = f"  {label:<15} cp -T {t:<3}    large {rate:7,.0f} MB/s      "
                    if raw:
                        par = min(t, n_large)
                        base = [raw_xrdcp(lurls, out / "raw-large", par) for _ in range(rounds)]
                        raw_rate = median_rate(large_mb, base)
                        ratio = rate / raw_rate
                        line += f"raw xrdcp --parallel {par}: {raw_rate:5,.0f} MB/s ({ratio:4.2f}x)"
                        line += f"   {verdict(ratio, 0.9)}"
                    print(line)
            if xrootd is not None:  # the embedded SE's server side against Debian's (A's part)
                for t in threads:
                    small = small_rate["emb", t] / small_rate["deb", t]
                    big = large_rate["emb", t] / large_rate["deb", t]
                    print(
                        f"  embedded / Debian xrootd -T {t:<3} 1 MB {small:4.2f}x "
                        f"({verdict(small, 0.5)})   large {big:4.2f}x ({verdict(big, 0.8)})"
                    )
        finally:
            await client.close()
    finally:
        central.stop()
        if xrootd is not None:
            xrootd.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--threads", default="1,32", help="comma list of -T values")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (median)")
    parser.add_argument("--https", action="store_true", help="also the embedded SE's HTTPS")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="jalien-bench-cp-") as tmp:
        asyncio.run(run(args.scale, threads, max(1, args.rounds), args.https, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
