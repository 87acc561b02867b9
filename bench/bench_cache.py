"""Cache service benchmarks, one run, ratios against Redis and in-process LMDB reads.

    python bench/bench_cache.py [--scale 1.0] [--tls] [--no-redis]

The jalien cache server (``cache.*`` commands on the binary channel, plain TCP like Redis;
``--tls`` adds a mutual-TLS run) runs in a process of its own pinned to one core; the load
generator runs in this process, pinned to the other. Each figure is also given per server
core: ops/s / (server CPU seconds / wall seconds), the server's CPU read from /proc.

1. In-process: raw py-lmdb reads on a reused transaction (the limit), ``CacheStore.get``,
   ``get_many`` of 64 keys, ``set`` through the group-commit writer; LRU against FIFO
   eviction (hit ratio of a Zipf workload on a namespace bounded at a tenth of its keys).
2. Network GET and SET, 8 connections x 64 in flight (pipelined) and 8 x 1 (one at a time),
   on a namespace far from its bound; GET again on one at its bound (LRU bookkeeping on).
3. Redis on 127.0.0.1:6379 driven the same way by ``redis-benchmark`` (-c 8, -P 64 / -P 1,
   -d 100, --csv), its server CPU read from /proc as ours.
4. Latency at half load: GET paced (open loop in 1 ms ticks, 8 connections, one frame per
   request, nothing pinned) at half of what one server core serves in that pattern (measured
   by a calibration run at a quarter of the pipelined capacity), p50/p99 from the tick that
   sent a request to its reply; Redis at the same rate. The generator is Python: its own
   floor shows in Redis's figures.

Targets (issue 10): >= 200k GET/s per core pipelined, p99 < 1 ms at half load, >= 0.25x
Redis per core. Figures are reported, never asserted. ``--scale`` sets each window to
2 s * scale (at least 0.1 s) and the key space; CI runs ``--scale 0.001``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import io
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadlib import cpu_seconds, machine_busy, pin, unpin  # bench/

HOST = "127.0.0.1"
REDIS = ("127.0.0.1", 6379)
CONNECTIONS = 8
PIPELINE = 64
VALUE = 100  # bytes, redis-benchmark -d 100
KEY = b"key:%012d"  # redis-benchmark's key:__rand_int__ with -r
NS = "bench"
SERVER_SLOT, LOADGEN_SLOT = 0, 1
PER_CORE_TARGET = 200_000
P99_TARGET = 0.001
FULL = "bench.full"  # the same keys in a namespace at its bound: LRU bookkeeping on
REDIS_RATIO_TARGET = 0.25


# -- values -------------------------------------------------------------------------------


def value_of(i: int) -> bytes:
    return (b"%012d" % i) * (VALUE // 12) + b"v" * (VALUE % 12)


# -- 1. in-process --------------------------------------------------------------------------


def in_process(tmp: Path, keys: int, window: float) -> dict[str, float]:
    from jalien.cache.store import CacheStore, Policy

    out: dict[str, float] = {}
    store = CacheStore(tmp / "inproc", policies={NS: Policy(max_entries=keys * 2, ttl=0)})
    try:
        for i in range(keys):
            store.set(NS, KEY % i, value_of(i))
        store.flush().result(120)
        names = [KEY % random.randrange(keys) for _ in range(65536)]
        # the limit: py-lmdb on a reused read transaction, nothing around it
        env = store._env
        db = store._spaces[NS].v
        txn = env.begin()
        get = txn.get
        out["lmdb"] = _rate(lambda n: [get(k, None, db) for k in names[:n]], window)
        txn.abort()
        sget = store.get
        out["store.get"] = _rate(lambda n: [sget(NS, k) for k in names[:n]], window)
        many = store.get_many
        batches = [names[i : i + 64] for i in range(0, len(names), 64)]
        out["store.get_many"] = _rate(
            lambda n: [many(NS, b) for b in batches[: max(1, n // 64)]], window, per=64
        )
        sset = store.set

        def sets(n: int) -> None:
            for k in names[:n]:
                sset(NS, k, b"x" * VALUE)
            store.flush().result(120)

        out["store.set"] = _rate(sets, window)
        out["commits"] = store.commits
    finally:
        store.close()
    return out


def _rate(fn: Any, window: float, per: int = 1) -> float:
    """Operations per CPU second of this process, over about *window* seconds."""
    done, cpu, n = 0, 0.0, 1024
    deadline = time.perf_counter() + window
    while time.perf_counter() < deadline:
        c0 = time.process_time()
        fn(n)
        cpu += time.process_time() - c0
        done += n if per == 1 else max(1, n // per) * per
        n = min(n * 2, 65536)
    return done / cpu if cpu else 0.0


def eviction_policies(tmp: Path, scale: float) -> dict[str, tuple[float, float]]:
    """Hit ratio and ops/s of a cache-aside Zipf(1.0) workload, LRU against FIFO."""
    from jalien.cache.store import CacheStore, Policy

    universe = max(2000, int(50_000 * scale))
    capacity = universe // 10
    accesses = max(20_000, int(400_000 * scale))
    weights = [1.0 / (i + 1) for i in range(universe)]
    rng = random.Random(10)
    order = list(range(universe))
    rng.shuffle(order)  # popularity unrelated to key order
    picks = rng.choices(order, weights=weights, k=accesses)
    names = [KEY % i for i in picks]
    out = {}
    for label, lru in (("lru", True), ("fifo", False)):
        store = CacheStore(
            tmp / f"evict-{label}", policies={"z": Policy(max_entries=capacity, lru=lru, ttl=0)}
        )
        try:
            hits = 0
            warm = len(names) // 4
            c0 = time.process_time()
            for n, key in enumerate(names):
                if n == warm:
                    hits = 0
                if store.get("z", key) is None:
                    store.set("z", key, b"x" * VALUE)
                else:
                    hits += 1
                if n % 256 == 0:
                    store.flush().result(60)  # keep the writer (and its evictions) in step
            store.flush().result(60)
            cpu = time.process_time() - c0
            out[label] = (hits / (len(names) - warm), len(names) / cpu)
        finally:
            store.close()
    return out


# -- 2. the jalien cache server -------------------------------------------------------------


def server_main(path: str, keys: int, tls: dict[str, str] | None, conn: Any) -> None:
    pin(SERVER_SLOT)
    import uvloop

    uvloop.run(_serve(path, keys, tls, conn))


async def _serve(path: str, keys: int, tls: dict[str, str] | None, conn: Any) -> None:
    from jalien.cache.store import CacheStore, Policy
    from jalien.commands.cache_cmds import CacheCommands
    from jalien.commands.dispatch import Dispatcher
    from jalien.commands.table import CommandTable
    from jalien.net.identity import Identity
    from jalien.net.server import Server

    sys.setswitchinterval(0.001)  # as jcentral does (roles/central_cache.py)
    store = CacheStore(
        path,
        policies={NS: Policy(max_entries=keys * 2, ttl=0), FULL: Policy(max_entries=keys, ttl=0)},
    )
    for i in range(keys):
        store.set(NS, KEY % i, value_of(i))
        store.set(FULL, KEY % i, value_of(i))
        if i % 10_000 == 0:
            await asyncio.wrap_future(store.flush())
    await asyncio.wrap_future(store.flush())
    table = CommandTable()
    CacheCommands(table, store).register()
    identity = Identity(dn="/CN=bench", login="bench", roles=("cache",))
    context = None
    if tls is not None:
        from jalien.auth.tls import server_context

        context = server_context(tls["cert"], tls["key"], tls["ca_dir"])
    server = Server(Dispatcher(table, site="BENCH::SITE"), context, lambda _ssl: identity)
    await server.start([HOST], -1, 0)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_pipe() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
        if not stop.done():
            stop.set_result(None)

    loop.add_reader(conn.fileno(), on_pipe)
    conn.send(("ready", os.getpid(), server.ports()["binary"]))
    await stop
    loop.remove_reader(conn.fileno())
    await server.close()
    store.close()


@contextlib.contextmanager
def cache_server(tmp: Path, keys: int, tls: dict[str, str] | None) -> Any:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    path = str(tmp / ("server-tls" if tls else "server"))
    proc = ctx.Process(target=server_main, args=(path, keys, tls, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(120):
            raise RuntimeError("the cache server did not start")
        _ready, pid, port = parent.recv()
        yield pid, port
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def jalien_ring(command: str, keys: int, depth: int, size: int, ns: str = NS) -> tuple[bytes, int]:
    """*size* frames (a multiple of *depth*) of random keys; frame i has sequence
    i % depth + 1, so that any *depth* consecutive frames in flight have distinct streams."""
    from jalien.wire import codec, framing
    from jalien.wire.messages import Request
    from jalien.wire.streams import stream_id

    frames = []
    for i in range(size):
        k = random.randrange(keys)
        data = [KEY % k, b"x" * VALUE] if command == "cache.set" else [KEY % k]
        body = codec.encode_msgpack(Request(command=command, options=[ns], data=data))
        frames.append(framing.encode_frame(stream_id(0, i % depth + 1), body))
    width = len(frames[0])
    assert all(len(f) == width for f in frames)
    return b"".join(frames) * 2, width


class Closed(asyncio.Protocol):
    """Keeps *depth* requests in flight: n replies in, the next n frames of the ring out."""

    def __init__(self, ring: bytes, width: int, depth: int, frames: int, parse: Any) -> None:
        self.ring, self.width, self.depth, self.frames = ring, width, depth, frames
        self.parse = parse
        self.pos = depth
        self.count = 0
        self.running = True
        self.sample = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.ring[: self.depth * self.width])

    def data_received(self, data: bytes) -> None:
        n = self.parse(data)
        if not n:
            return
        if not self.sample:
            self.sample = data[:256]
        self.count += n
        if self.running:
            w, start = self.width, self.pos
            self.transport.write(self.ring[start * w : (start + n) * w])
            self.pos = (start + n) % self.frames


def jalien_parser() -> Any:
    from jalien.wire import framing

    feed = framing.FrameDecoder(raw=True).feed
    return lambda data: len(feed(data))


def resp_parser() -> Any:
    """Counts RESP replies (+OK, bulk strings, nil) in a byte stream."""
    buf = bytearray()

    def parse(data: bytes) -> int:
        buf.extend(data)
        n, pos, end = 0, 0, len(buf)
        while pos < end:
            line = buf.find(b"\r\n", pos)
            if line < 0:
                break
            if buf[pos] == 0x24:  # $len
                size = int(buf[pos + 1 : line])
                stop = line + 2 + (size + 2 if size >= 0 else 0)
                if stop > end:
                    break
                pos = stop
            else:
                pos = line + 2
            n += 1
        del buf[:pos]
        return n

    return parse


def resp_ring(command: str, keys: int, size: int) -> tuple[bytes, int]:
    frames = []
    for _ in range(size):
        key = KEY % random.randrange(keys)
        parts = [b"SET", key, b"x" * VALUE] if command == "SET" else [b"GET", key]
        frames.append(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
    return b"".join(frames) * 2, len(frames[0])


async def closed_loop(
    port: int,
    ring: tuple[bytes, int],
    depth: int,
    frames: int,
    parse: Any,
    warmup: float,
    window: float,
    pid: int,
    context: Any = None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    data, width = ring
    pairs = [
        await loop.create_connection(
            lambda: Closed(data, width, depth, frames, parse()),
            HOST,
            port,
            ssl=context,
            server_hostname="localhost" if context else None,
        )
        for _ in range(CONNECTIONS)
    ]
    loads = [p for _t, p in pairs]
    try:
        await asyncio.sleep(warmup)
        c0, s0, t0 = sum(p.count for p in loads), cpu_seconds(pid), time.perf_counter()
        m0, g0 = machine_busy(), time.process_time()
        await asyncio.sleep(window)
        c1, s1, t1 = sum(p.count for p in loads), cpu_seconds(pid), time.perf_counter()
        m1, g1 = machine_busy(), time.process_time()
    finally:
        for transport, p in pairs:
            p.running = False
            transport.abort()
    await asyncio.sleep(0.05)
    wall = t1 - t0
    return {
        "ops": (c1 - c0) / wall,
        "cpu": (s1 - s0) / wall,
        "gen": (g1 - g0) / wall,
        "other": max(0.0, (m1 - m0) - (s1 - s0) - (g1 - g0)) / wall,
        "sample": loads[0].sample,
    }


class Paced(asyncio.Protocol):
    """Replies come back in request order on a connection: each pops its send time."""

    def __init__(self, parse: Any, latencies: list[float]) -> None:
        self.parse = parse
        self.sent: collections.deque[float] = collections.deque()
        self.latencies = latencies
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        n = self.parse(data)
        now = time.perf_counter()
        sent, out = self.sent, self.latencies
        for _ in range(n):
            out.append(now - sent.popleft())


async def paced(
    port: int,
    ring: tuple[bytes, int],
    frames: int,
    parse: Any,
    rate: float,
    warmup: float,
    window: float,
    pid: int = 0,
) -> dict[str, float]:
    """Open loop: *rate* requests/s spread over the connections in 1 ms ticks; latency is
    from the tick that sent a request to its reply (a late reply is never hidden). With
    *pid*, the share of a core that process used in the measured window ("cpu")."""
    loop = asyncio.get_running_loop()
    data, width = ring
    latencies: list[float] = []
    pairs = [
        await loop.create_connection(lambda: Paced(parse(), latencies), HOST, port)
        for _ in range(CONNECTIONS)
    ]
    conns = [p for _t, p in pairs]
    start = time.perf_counter()
    m0 = machine_busy()
    measure_from = start + warmup
    stop = measure_from + window
    sent = pos = turn = 0
    measured_at = 0
    cpu0 = cpu1 = 0.0
    try:
        while True:
            now = time.perf_counter()
            if now >= stop:
                cpu1 = cpu_seconds(pid) if pid else 0.0
                break
            if not measured_at and now >= measure_from:
                measured_at = len(latencies) + sum(len(c.sent) for c in conns)
                cpu0 = cpu_seconds(pid) if pid else 0.0
            due = int((now - start) * rate) - sent
            batches: list[list[bytes]] = [[] for _ in conns]
            for _ in range(due):  # one frame per request, one write per connection and tick
                batches[turn].append(data[pos * width : (pos + 1) * width])
                conns[turn].sent.append(now)
                turn = (turn + 1) % CONNECTIONS
                pos = (pos + 1) % frames
            for conn, batch in zip(conns, batches, strict=True):
                if batch:
                    conn.transport.write(b"".join(batch))
            sent += due
            await asyncio.sleep(0.001)
        deadline = time.perf_counter() + 2
        while any(c.sent for c in conns) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
    finally:
        for transport, _p in pairs:
            transport.abort()
    sample = sorted(latencies[measured_at:])
    other = (machine_busy() - m0) / (time.perf_counter() - start)
    if not sample:
        return {"rate": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0, "machine": other}
    return {
        "cpu": (cpu1 - cpu0) / window,
        "machine": other,
        "rate": len(sample) / window,
        "p50": sample[len(sample) // 2],
        "p99": sample[min(len(sample) - 1, int(len(sample) * 0.99))],
        "max": sample[-1],
    }


def loadgen(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


# -- 3. Redis -------------------------------------------------------------------------------


def redis_pid() -> int | None:
    """The redis-server on 127.0.0.1:6379 (its pid from INFO), None if none answers."""
    try:
        with socket.create_connection(REDIS, timeout=1) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.endswith(b"\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > 1 << 20:
                    break
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


def redis_populate(keys: int) -> None:
    with socket.create_connection(REDIS, timeout=10) as sock:
        batch = []
        for i in range(keys):
            v = value_of(i)
            k = KEY % i
            batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        sock.sendall(b"".join(batch))
        parse, got = resp_parser(), 0
        while got < keys:
            got += parse(sock.recv(1 << 20))


def redis_benchmark(test: str, pipeline: int, requests: int, keys: int, pid: int) -> dict[str, Any]:
    args = [
        "redis-benchmark", "-h", REDIS[0], "-p", str(REDIS[1]), "-c", str(CONNECTIONS),
        "-P", str(pipeline), "-n", str(requests), "-d", str(VALUE), "-r", str(keys),
        "-t", test, "--csv",
    ]  # fmt: skip
    c0 = cpu_seconds(pid)
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    c1 = cpu_seconds(pid)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    row = next(r for r in rows if r["test"].upper() == test.upper())
    rps = float(row["rps"])
    # redis-benchmark's wall time includes its connection setup: the CPU share is ops-based
    busy = (c1 - c0) / (requests / rps) if rps else 0.0
    return {"ops": rps, "cpu": min(busy, 1.0) if busy else 0.0, "p99": float(row["p99_latency_ms"])}


# -- report ---------------------------------------------------------------------------------


def per_core(result: dict[str, Any]) -> float:
    return result["ops"] / result["cpu"] if result.get("cpu") else 0.0


def fmt(rate: float) -> str:
    return f"{rate / 1000:,.0f}k" if rate >= 10_000 else f"{rate:,.0f}"


def row(name: str, result: dict[str, Any], extra: str = "") -> None:
    if "other" in result:
        extra = f"load gen {100 * result['gen']:.0f}%, other processes {100 * result['other']:.0f}%"
    print(
        f"  {name:<26} {fmt(result['ops']):>9} {100 * result.get('cpu', 0):>5.0f}% "
        f"{fmt(per_core(result)):>11}  {extra}"
    )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def make_tls(tmp: Path) -> dict[str, str]:
    from tests.gridpki import make_grid_pki

    pki = make_grid_pki(tmp / "pki")
    return {"cert": str(pki.host_cert), "key": str(pki.host_key), "ca_dir": str(pki.ca_dir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--tls", action="store_true", help="also the server with mutual TLS")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    scale = args.scale
    window = max(0.1, 2.0 * scale)
    warmup = max(0.05, 0.3 * scale)
    keys = max(1000, int(100_000 * scale))
    ring_frames = PIPELINE * 64
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    where = pin(LOADGEN_SLOT)
    try:
        print(
            f"bench_cache: {keys} keys of {VALUE} B, windows of {window:.2f} s, "
            f"{CONNECTIONS} connections; load generator on {where}, server on cpu slot "
            f"{SERVER_SLOT}"
        )
        print("\n1. in-process (this process, one core)")
        inproc = in_process(tmp, keys, window)
        limit = inproc["lmdb"]
        for name in ("lmdb", "store.get", "store.get_many", "store.set"):
            note = "the limit" if name == "lmdb" else f"{inproc[name] / limit:.2f}x the limit"
            print(f"  {name:<34} {fmt(inproc[name]):>9} ops per CPU second  {note}")
        print(f"  ({int(inproc['commits'])} group commits in all)")
        policies = eviction_policies(tmp, scale)
        for label, (ratio, rate) in policies.items():
            print(
                f"  eviction {label:<5} Zipf(1.0), bound = keys/10: hit ratio {100 * ratio:.1f}%"
                f", {fmt(rate)} get-or-set/s"
            )

        print("\n2. network: jalien cache server, plain TCP")
        print(f"  {'':<26} {'ops/s':>9} {'server':>6} {'per core':>11}")
        ours: dict[str, Any] = {}
        with cache_server(tmp, keys, None) as (pid, port):
            for name, command, depth, ns in (
                ("GET pipelined 8x64", "cache.get", PIPELINE, NS),
                ("GET one at a time 8x1", "cache.get", 1, NS),
                ("GET pipelined, LRU on", "cache.get", PIPELINE, FULL),
                ("SET pipelined 8x64", "cache.set", PIPELINE, NS),
                ("SET one at a time 8x1", "cache.set", 1, NS),
            ):
                ring = jalien_ring(command, keys, depth, ring_frames, ns)
                ours[name] = loadgen(
                    closed_loop(port, ring, depth, ring_frames, jalien_parser, warmup, window, pid)
                )
                row(name, ours[name])
            _check_sample(ours["GET pipelined 8x64"]["sample"])
            unpin(pid)
            unpin()
            # half load in this traffic pattern: a calibration run at a quarter of the
            # pipelined capacity says what one request costs the server when requests come
            # one frame each, a few per read; half load keeps the server core half busy
            ring = jalien_ring("cache.get", keys, 1 << 16, 1 << 16)
            quarter = per_core(ours["GET pipelined 8x64"]) / 4
            calib = loadgen(paced(port, ring, 1 << 16, jalien_parser, quarter, warmup, window, pid))
            capacity = calib["rate"] / calib["cpu"] if calib["cpu"] else 2 * quarter
            half = capacity / 2
            lat = loadgen(paced(port, ring, 1 << 16, jalien_parser, half, warmup, window, pid))
        if args.tls:
            tls = make_tls(tmp)
            from jalien.auth.tls import client_context

            context = client_context(tls["cert"], tls["key"], tls["ca_dir"])
            with cache_server(tmp, keys, tls) as (pid, port):
                ring = jalien_ring("cache.get", keys, PIPELINE, ring_frames)
                ours["GET pipelined 8x64, TLS"] = loadgen(
                    closed_loop(
                        port,
                        ring,
                        PIPELINE,
                        ring_frames,
                        jalien_parser,
                        warmup,
                        window,
                        pid,
                        context,
                    )
                )
                row("GET pipelined 8x64, TLS", ours["GET pipelined 8x64, TLS"])

        print("\n3. Redis 127.0.0.1:6379, redis-benchmark -c 8 -d 100 --csv")
        theirs: dict[str, Any] = {}
        rpid = None if args.no_redis else redis_pid()
        rlat = None
        if args.no_redis:
            print("  SKIPPED: --no-redis")
        elif shutil.which("redis-benchmark") is None:
            print("  SKIPPED: redis-benchmark is not installed (apt-get install redis-tools)")
        elif rpid is None:
            print("  SKIPPED: no Redis server answers on 127.0.0.1:6379")
        else:
            redis_populate(keys)
            n_pipe, n_one = max(2000, int(2_000_000 * scale)), max(1000, int(100_000 * scale))
            for name, test, pipeline, n in (
                ("GET pipelined 8x64", "get", PIPELINE, n_pipe),
                ("GET one at a time 8x1", "get", 1, n_one),
                ("SET pipelined 8x64", "set", PIPELINE, n_pipe),
                ("SET one at a time 8x1", "set", 1, n_one),
            ):
                theirs[name] = redis_benchmark(test, pipeline, n, keys, rpid)
                row(name, theirs[name], f"redis-benchmark p99 {theirs[name]['p99']:.2f} ms")
            ring = resp_ring("GET", keys, 1 << 16)
            rlat = loadgen(paced(REDIS[1], ring, 1 << 16, resp_parser, half, warmup, window))

        print("\n4. GET latency at half load (open loop: 1 ms ticks, one frame per request,")
        print("   8 connections; nothing pinned)")
        print(
            f"  paced capacity of one server core: {fmt(capacity)}/s (at {fmt(calib['rate'])}/s"
            f" the server used {100 * calib['cpu']:.0f}% of a core); half load: {fmt(half)}/s"
        )
        for name, result in (("jalien", lat), ("Redis", rlat)):
            if result is not None:
                busy = f"server {100 * result['cpu']:.0f}%, " if result.get("cpu") else ""
                print(
                    f"  {name:<6} at {fmt(result['rate'])}/s: p50 {result['p50'] * 1e3:.3f} ms, "
                    f"p99 {result['p99'] * 1e3:.3f} ms, max {result['max'] * 1e3:.2f} ms "
                    f"({busy}the machine {100 * result['machine']:.0f}% of one core)"
                )

        print("\nsummary (per server core)")
        pipelined = per_core(ours["GET pipelined 8x64"])
        print(
            f"  GET pipelined {fmt(pipelined)}/s per core: target >= "
            f"{fmt(PER_CORE_TARGET)}: {verdict(pipelined >= PER_CORE_TARGET)}"
        )
        print(f"  p99 at half load {lat['p99'] * 1e3:.3f} ms: target < 1 ms: "
              f"{verdict(0 < lat['p99'] < P99_TARGET)}")  # fmt: skip
        for name in ours:
            if name in theirs and per_core(theirs[name]):
                ratio = per_core(ours[name]) / per_core(theirs[name])
                target = (
                    f": target >= {REDIS_RATIO_TARGET}x: {verdict(ratio >= REDIS_RATIO_TARGET)}"
                    if name.startswith("GET")
                    else ""
                )
                print(f"  {name:<24} {ratio:.2f}x Redis per core{target}")
        get_net = per_core(ours["GET one at a time 8x1"])
        print(f"  GET one at a time per core: {get_net / limit:.3f}x in-process LMDB reads")
        print(f"  GET pipelined per core:     {pipelined / limit:.3f}x in-process LMDB reads")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _check_sample(sample: bytes) -> None:
    """One reply, decoded outside the counting: is it the value asked for?"""
    from jalien.wire import codec, framing
    from jalien.wire.messages import Reply

    frames = framing.FrameDecoder(raw=True).feed(sample[: framing.HEADER_SIZE + 4096])
    if not frames:
        return
    reply = codec.decode_msgpack(bytes(frames[0][2]))
    assert type(reply) is Reply and reply.exitcode == 0, reply
    assert reply.data and len(reply.data[0] or b"") == VALUE, reply


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
