"""cp benchmark, one run: downloads with ``cp -T 1/8/32`` from the embedded HTTPS SE and from
a real XRootD SE, against limits measured in the same run on the same files.

    python bench/bench_cp.py [--scale 1.0] [--threads 1,8,32]

Scale 1: 1,000 x 1 MB files and 3 x 1 GB files (``--scale 0.001``: 20 x 1 MB and 3 x 2 MB,
a few seconds). The copy engine (jalien.storage.cp) runs here against a jcentral process with
its embedded SE and an xrootd started as in the tests (tests/storage/xrootd_server.py; without
xrootd one line says so and only the embedded SE is measured). Baselines: a plain local copy
of the same files (shutil, one at a time, then 32 threads) and raw xrdcp of the same
replicas (all small files in one ``xrdcp --parallel 32``; each large file alone). Targets:
>= 200 files/s for 1 MB files; large files >= 0.8x the raw xrdcp rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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
from tests.storage.xrootd_server import XRootDUnavailable, start_xrootd  # noqa: E402

NEAR, XRD = "ALICE::LOCAL::SE", "ALICE::LOCAL::XRD"
MB = 1_000_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        env = {**os.environ, "JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_NAME": NEAR,
               "JALIEN_SE_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}  # fmt: skip
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


def raw_xrdcp(urls: list[str], dest: Path, parallel: int, md5: str = "") -> float:
    """One xrdcp for all *urls* into *dest* (its own parallelism), as a user would; with
    *md5*, checked by xrdcp as cp checks it (``--cksum md5:VALUE``)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    listing = dest.parent / "xrdcp-infiles.txt"
    listing.write_text("\n".join(urls) + "\n")
    t0 = time.perf_counter()
    subprocess.run(
        ["xrdcp", "--nopbar", "--force", "--parallel", str(parallel), "--infiles", str(listing),
         f"{dest}/", *(["--cksum", f"md5:{md5}"] if md5 else [])],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - t0


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


async def replica_urls(client, lfn_dir: str, names: list[str]) -> list[tuple[str, str]]:
    """(URL with its envelope, md5) of each file's first replica."""
    urls = []
    for name in names:
        rec = (await client.call("access", "read", f"{lfn_dir}{name}")).results[0]
        urls.append((transfer_url(rec["url"], rec["envelope"]), rec["md5"]))
    return urls


async def run(scale: float, threads: list[int], tmp: Path) -> None:
    n_small = max(20, int(1000 * scale))
    n_large, large = 3, max(2 * MB, int(1000 * MB * scale))
    small_files = make_files(tmp / "src/small", n_small, MB, "s")
    large_files = make_files(tmp / "src/large", n_large, large, "L")
    print(
        f"== cp: {n_small:,} x 1 MB files, {n_large} x {large / MB:,.0f} MB files "
        f"(scale {scale}, {os.cpu_count()} CPUs)"
    )
    central = Central(tmp / "central")
    xrootd = None
    try:
        try:
            xrootd = start_xrootd("bench")
        except XRootDUnavailable as exc:
            print(f"  (no XRootD SE: {exc}; only the embedded SE is measured)")
        ssl_ctx = __import__("ssl").create_default_context(
            capath=str(central.home / "certificates")
        )
        ssl_ctx.check_hostname = False
        client = Client("127.0.0.1", central.binary, central.user, reconnect=False)
        await client.connect()
        try:
            ses = [("embedded SE", NEAR, "https")]
            if xrootd is not None:
                await client.call("addSE", "-site", "LOCAL", "-qos", "disk", XRD, xrootd.url)
                ses.append(("XRootD SE", XRD, "root"))
            out = tmp / "dst"

            t_local = local_copy(small_files, out / "local", 1)
            t_local32 = local_copy(small_files, out / "local", 32)
            l_local = local_copy(large_files, out / "local-large", 1)
            print(
                f"  baseline local copy, 1 MB      T1 {n_small / t_local:9,.0f} files/s   "
                f"T32 {n_small / t_local32:9,.0f} files/s"
            )
            print(f"  baseline local copy, large     {n_large * large / MB / l_local:9,.0f} MB/s")

            for label, se, kind in ses:
                up = await upload(client, tmp / "src/small", f"b/{kind}/small/", se, ssl_ctx)
                up_l = await upload(client, tmp / "src/large", f"b/{kind}/large/", se, ssl_ctx)
                print(
                    f"  {label:<12} upload -T 32    {n_small / up:9,.0f} files/s   "
                    f"large {n_large * large / MB / up_l:9,.0f} MB/s"
                )
                raw_small = raw_large = 0.0
                if kind == "root":
                    urls = await replica_urls(
                        client, f"b/{kind}/small/", [f.name for f in small_files]
                    )
                    raw_small = n_small / raw_xrdcp([u for u, _ in urls], out / "raw-small", 32)
                    lurls = await replica_urls(
                        client, f"b/{kind}/large/", [f.name for f in large_files]
                    )
                    t_raw = sum(raw_xrdcp([u], out / "raw-large", 1) for u, _ in lurls)
                    t_md5 = sum(raw_xrdcp([u], out / "raw-large", 1, m) for u, m in lurls)
                    raw_large = n_large * large / MB / t_raw
                    print(
                        f"  baseline raw xrdcp             {raw_small:9,.0f} files/s "
                        f"(--parallel 32)   large {raw_large:9,.0f} MB/s (one file at a time), "
                        f"{n_large * large / MB / t_md5:,.0f} MB/s with --cksum md5"
                    )
                for t in threads:
                    secs = await grid_copy(client, f"b/{kind}/small/*", out / "small", t, ssl_ctx)
                    rate = n_small / secs
                    vs = (
                        f"{rate / raw_small:5.2f}x raw xrdcp"
                        if raw_small
                        else f"{rate / (n_small / t_local):5.2f}x local"
                    )
                    print(
                        f"  {label:<12} cp -T {t:<3} 1 MB  {rate:9,.0f} files/s   {vs}   "
                        f"(target >= 200/s)"
                    )
                for t in threads:
                    secs = await grid_copy(client, f"b/{kind}/large/*", out / "large", t, ssl_ctx)
                    rate = n_large * large / MB / secs
                    base = raw_large or n_large * large / MB / l_local
                    what = "raw xrdcp (target >= 0.8x)" if raw_large else "local copy"
                    print(
                        f"  {label:<12} cp -T {t:<3} large {rate:9,.0f} MB/s      "
                        f"{rate / base:5.2f}x {what}"
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
    parser.add_argument("--threads", default="1,8,32", help="comma list of -T values")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="jalien-bench-cp-") as tmp:
        asyncio.run(run(args.scale, threads, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
