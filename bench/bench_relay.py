"""The filesystem spool (worker nodes without network): round trip and requests/s.

    python bench/bench_relay.py [--scale 1.0] [--json] [--dir DIR]

A relay (``net.spool_relay.SpoolRelay``, the VoBox's server side of the spool) runs in its
own process on a spool in *DIR* (default: a temporary directory; give a directory on the
filesystem to measure, e.g. NFS) with a handler that answers ``ping`` itself, so that the
figures are the spool's alone (files written with fsync, renamed, found, read, removed, on
both sides). Clients in this process use ``net.client.Client`` with the spool connector, as
the JobAgent does. For each waking mode - inotify (plus the scan), polling only (every
0.1 s, the default; and every 0.01 s) - the same run measures:

1. round trip: one request at a time, p50 and p90 in ms (goal: p50 <= 20 ms with inotify);
2. throughput: 4 connections with 16 requests in flight each, requests/s (goal >= 500/s
   on a local filesystem).

Median of rounds. Figures are reported, never asserted. CI runs ``--scale 0.001``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from jalien.net import spool  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from jalien.net.identity import Identity  # noqa: E402
from jalien.net.spool_relay import SpoolRelay  # noqa: E402
from jalien.wire.messages import Reply, Request  # noqa: E402

MODES = [("inotify", 0.1), ("poll", 0.1), ("poll", 0.01)]


class PingHandler:
    def open_session(self, identity: Identity, push: object, *, personality: str) -> Identity:
        return identity

    def close_session(self, session: object) -> None:
        pass

    def dispatch(self, session: Identity, request: Request) -> Reply:
        return Reply(results=[{"message": "pong"}])


def _identify(der: bytes) -> Identity:
    cert = x509.load_der_x509_certificate(der)
    return Identity(dn=cert.subject.rfc4514_string(), login="bench", cert=der)


async def serve(root: Path, watch: str, poll: float) -> None:
    relay = SpoolRelay(PingHandler(), root, _identify, watch=watch, poll=poll)
    await relay.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await relay.close()


def make_cert() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(pem), key_pem


def _client(root: Path, watch: str, poll: float, cred: tuple[bytes, bytes]) -> Client:
    connect = spool.connector(root, *cred, watch=watch, poll=poll)
    return Client("bench spool", 0, None, connector=connect, reconnect=False)


async def measure(root: Path, watch: str, poll: float, n_rtt: int, n_tput: int) -> dict:
    cred = make_cert()
    one = _client(root, watch, poll, cred)
    await one.connect()
    await one.call("ping", timeout=30)  # the relay found the connection
    times = []
    for _ in range(n_rtt):
        start = time.perf_counter()
        reply = await one.call("ping", timeout=30)
        times.append((time.perf_counter() - start) * 1000)
        assert reply.exitcode == 0
    await one.close()
    clients = [_client(root, watch, poll, cred) for _ in range(4)]
    for c in clients:
        await c.connect()
        await c.call("ping", timeout=30)
    per_client = max(1, n_tput // len(clients))

    async def load(c: Client) -> None:
        left = per_client

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                assert (await c.call("ping", timeout=60)).exitcode == 0

        await asyncio.gather(*(worker() for _ in range(16)))

    start = time.perf_counter()
    await asyncio.gather(*(load(c) for c in clients))
    rate = per_client * len(clients) / (time.perf_counter() - start)
    for c in clients:
        await c.close()
    quantiles = statistics.quantiles(times, n=10) if len(times) >= 2 else times * 9
    return {"p50_ms": statistics.median(times), "p90_ms": quantiles[-1], "rps": rate}


def run_mode(base: Path, watch: str, poll: float, rounds: int, n_rtt: int, n_tput: int) -> dict:
    results = []
    for r in range(rounds):
        root = base / f"{watch}-{poll}-{r}"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), "--watch", watch, "--poll", str(poll)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            results.append(asyncio.run(measure(root, watch, poll, n_rtt, n_tput)))
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(30)
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", default="")
    parser.add_argument("--serve", default="")
    parser.add_argument("--watch", default="auto")
    parser.add_argument("--poll", type=float, default=0.1)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve), args.watch, args.poll))
        return
    n_rtt = max(5, int(300 * args.scale))
    n_tput = max(16, int(4000 * args.scale))
    rounds = 1 if args.scale < 0.1 else 3
    with tempfile.TemporaryDirectory(dir=args.dir or None, prefix="bench-relay-") as tmp:
        base = Path(tmp)
        figures = {
            f"{watch}@{poll:g}s": run_mode(base, watch, poll, rounds, n_rtt, n_tput)
            for watch, poll in MODES
        }
        fs = _filesystem(base)
    if args.json:
        print(json.dumps({"filesystem": fs, "modes": figures}, indent=2))
        return
    print(f"spool on {fs} ({n_rtt} round trips, {n_tput} requests at 64 in flight, "
          f"median of {rounds})")  # fmt: skip
    for name, fig in figures.items():
        print(
            f"  {name:14s} round trip p50 {fig['p50_ms']:7.2f} ms  p90 {fig['p90_ms']:7.2f} ms"
            f"   throughput {fig['rps']:8.0f} requests/s"
        )
    print("goals: p50 <= 20 ms with inotify, >= 500 requests/s on a local filesystem")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
