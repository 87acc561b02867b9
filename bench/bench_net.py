"""Network benchmarks, one run, ratios against baselines measured beside them.

    python bench/bench_net.py [--scale 1.0] [--command ping|pwd] [--no-spin]

Every server runs in a process of its own (uvloop), pinned to one core; one lean load
generator runs in another process, pinned to the other core, and reads the server's CPU
time at the edges of each measured window, so that each figure is also given per server
core: req/s / (server CPU seconds / wall seconds).

1. Binary channel, ``ping``: 8 connections x 1 request in flight, and pipelined 8 x 64.
   Targets (issue): >= 100k req/s and >= 400k req/s per server core.
2. WebSocket + JAliEn JSON, ``ping``, 8 x 1, picows client: >= 100k req/s per server core,
   and >= 3x a minimal server written with the ``websockets`` library (the baseline).
3. Physical limit: a raw uvloop echo server (a Protocol writing back what it reads),
   driven exactly as (1).
4. Mutual TLS (a test CA made in a temporary directory) vs plain TCP for (1) 8 x 1 and (2):
   TLS >= 0.5x plain.

Columns: req/s, the server's and the load generator's CPU (% of one core), req/s per
server core, CPU of every other process of the machine (a shared machine disturbs the
figures), which side limits, the ratio to the baseline (per core) and the target.
While the bench runs, SCHED_IDLE loops keep both cores from halting (see spinning()).

With ``BENCH_AUDIT=<dir>`` the jalien servers write their audit log (jalien.net.audit)
there, to measure what it costs per request.

Figures are reported, never asserted. ``--scale`` sets each window to 3 s * scale (at
least 0.2 s); CI runs ``--scale 0.001``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadlib import cpu_clock, machine_busy, pin  # bench/

HOST = "127.0.0.1"
CONNECTIONS = 8
PIPELINE = 64
WS_PATH = "/websocket/json"
SERVER_SLOT, LOADGEN_SLOT = 0, 1  # index into the allowed CPUs
BUSY = 0.90  # a process this busy (CPU seconds / wall seconds) is saturated
NOISY = 0.15  # other processes of the machine using this much of a core disturb the figures


# -- processes, cores, CPU time -------------------------------------------------------------


def _slot_name(slot: int) -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return "unpinned"
    return f"cpu{cpus[slot]}" if len(cpus) >= 2 else "unpinned"


SPIN_CODE = """
import os, sys, time
cpu, deadline, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
os.sched_setaffinity(0, {cpu})
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    os.nice(19)
while time.monotonic() < deadline and os.getppid() == parent:
    for _ in range(100000):
        pass
"""


@contextlib.contextmanager
def spinning(enabled: bool, lifetime: float) -> Any:
    """Keep both bench cores busy with SCHED_IDLE loops, so that a core waiting for the
    other process is not halted: waking a halted vCPU costs ~100 us in a VM, and 8 x 1
    ping-pong would then measure wake-ups rather than the server. An idle-class task yields
    at once to the server or the load generator; their CPU time is not affected."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cpus = sorted(os.sched_getaffinity(0)) if enabled else []
    except (AttributeError, OSError):
        cpus = []
    try:
        if len(cpus) >= 2:
            deadline = time.monotonic() + lifetime
            for slot in (SERVER_SLOT, LOADGEN_SLOT):
                args = [str(cpus[slot]), str(deadline), str(os.getpid())]
                procs.append(subprocess.Popen([sys.executable, "-c", SPIN_CODE, *args]))
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- servers --------------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    """The physical limit: write back whatever arrives (frames come back as they went)."""

    def connection_made(self, transport: Any) -> None:
        self.write = transport.write

    def data_received(self, data: bytes) -> None:
        self.write(data)


async def _start_echo() -> tuple[dict[str, int], Any]:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(EchoProtocol, HOST, 0, backlog=1024)

    async def close() -> None:
        srv.close()
        await srv.wait_closed()

    return {"binary": srv.sockets[0].getsockname()[1]}, close


async def _start_websockets() -> tuple[dict[str, int], Any]:
    """The baseline: a minimal JAliEn-shaped JSON ping server on the websockets library."""
    import msgspec
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    decode = msgspec.json.decode
    encode = msgspec.json.encode

    async def handler(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):  # the load generator just drops
            await answer(ws)

    async def answer(ws: Any) -> None:
        async for message in ws:
            request = decode(message)
            command = request.get("command")
            if command == "ping":
                results = [
                    {
                        "message": "pong",
                        "servertime": f"{time.time():.6f}",
                        "host": os.uname().nodename,
                    }
                ]
                exitcode, error = "0", ""
            elif command == "pwd":
                results, exitcode, error = [{"message": "/alice/", "pwd": "/alice/"}], "0", ""
            else:
                results, exitcode, error = [], "127", "Command not found"
            metadata = {
                "user": "bench",
                "currentdir": "/alice/",
                "site": "BENCH::SITE",
                "exitcode": exitcode,
                "error": error,
            }
            await ws.send(encode({"metadata": metadata, "results": results}), text=True)

    srv = await serve(handler, HOST, 0, compression=None, ping_interval=None)

    async def close() -> None:
        srv.close()
        await srv.wait_closed()

    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    return {"websocket": srv.sockets[0].getsockname()[1]}, close


async def _start_jalien(tls: dict[str, str] | None) -> tuple[dict[str, int], Any]:
    from jalien.commands.basic import BasicCommands
    from jalien.commands.dispatch import Dispatcher
    from jalien.commands.table import CommandTable
    from jalien.net.identity import AccountsAuthenticator, Identity
    from jalien.net.server import Server

    table = CommandTable()
    BasicCommands(table, motd="bench").register()
    handler = Dispatcher(table, site="BENCH::SITE")
    audit = None
    if os.environ.get("BENCH_AUDIT"):  # a directory: the server writes its audit log there
        from jalien.net.audit import AuditLog

        audit = AuditLog(Path(os.environ["BENCH_AUDIT"]) / f"audit-{os.getpid()}.jsonl")
    if tls is None:
        identity = Identity(dn="/CN=bench", login="bench", home="/alice/")
        server = Server(handler, None, lambda _ssl: identity, audit=audit)
    else:
        from jalien.auth.tls import server_context

        context = server_context(tls["cert"], tls["key"], tls["ca_dir"])
        accounts = AccountsAuthenticator(Path(tls["accounts"]))
        server = Server(handler, context, accounts, audit=audit)
    await server.start([HOST], 0, 0)

    async def close() -> None:
        await server.close()
        if audit is not None:
            audit.close()

    return server.ports(), close


async def _serve(kind: str, tls: dict[str, str] | None, conn: Any, lifetime: float) -> None:
    if kind == "echo":
        ports, close = await _start_echo()
    elif kind == "websockets":
        ports, close = await _start_websockets()
    else:
        ports, close = await _start_jalien(tls)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_pipe() -> None:
        with contextlib.suppress(EOFError, OSError):  # EOF: the parent went away
            conn.recv()  # "stop"
        if not stop.done():
            stop.set_result(None)

    loop.add_reader(conn.fileno(), on_pipe)
    timer = loop.call_later(lifetime, lambda: stop.done() or stop.set_result(None))
    conn.send(("ready", os.getpid(), ports))
    try:
        await stop
    finally:
        timer.cancel()
        loop.remove_reader(conn.fileno())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 5)


def server_main(kind: str, tls: dict[str, str] | None, conn: Any, lifetime: float) -> None:
    """Entry point of a server process (multiprocessing, spawn)."""
    pin(SERVER_SLOT)
    import uvloop

    uvloop.run(_serve(kind, tls, conn, lifetime))


# -- the load generator ---------------------------------------------------------------------


class BinaryLoad(asyncio.Protocol):
    """Keeps *depth* pre-encoded request frames in flight; counts replies, never decodes.

    The frames for sequences 1..depth sit twice in a row in *ring*, so the n frames that
    follow the last one sent are one slice. Replies to ``ping``/``pwd`` come back in order
    (the server answers them inline), so the n sequences answered are the n reused next."""

    def __init__(self, ring: bytes, size: int, depth: int) -> None:
        from jalien.wire import framing

        self.ring = ring
        self.size = size
        self.depth = depth
        self.pos = 0
        self.feed = framing.FrameDecoder(raw=True).feed
        self.count = 0
        self.running = True
        self.sample: bytes | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.ring[: self.depth * self.size])

    def data_received(self, data: bytes) -> None:
        frames = self.feed(data)
        n = len(frames)
        if not n:
            return
        self.count += n
        if self.sample is None:
            self.sample = bytes(frames[0][2])
        if self.running:
            size, start = self.size, self.pos
            self.transport.write(self.ring[start * size : (start + n) * size])
            self.pos = (start + n) % self.depth

    def connection_lost(self, exc: Exception | None) -> None:
        self.running = False


def _ring(command: str, depth: int, options: list[str] | None = None) -> tuple[bytes, int]:
    from jalien.wire import codec, framing
    from jalien.wire.messages import Request
    from jalien.wire.streams import stream_id

    body = codec.encode_msgpack(Request(command=command, options=list(options or ())))
    frames = [framing.encode_frame(stream_id(0, seq), body) for seq in range(1, depth + 1)]
    size = len(frames[0])
    assert all(len(f) == size for f in frames)
    return b"".join(frames) * 2, size


def _ws_load_class() -> Any:
    from picows import WSListener, WSMsgType

    text, more = WSMsgType.TEXT, WSMsgType.CONTINUATION

    class WsLoad(WSListener):
        """Keeps *depth* JSON requests in flight on one WebSocket; counts the text replies."""

        def __init__(self, payload: bytes, depth: int) -> None:
            self.payload = payload
            self.depth = depth
            self.count = 0
            self.running = True
            self.sample: bytes | None = None
            self.parts: list[bytes] = []
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport
            for _ in range(self.depth):
                transport.send(text, self.payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not text and frame.msg_type is not more:
                return
            if self.sample is None:  # one whole message, maybe sent as fragments
                self.parts.append(frame.get_payload_as_bytes())
                if frame.fin:
                    self.sample = b"".join(self.parts)
            if not frame.fin:  # a long answer in fragments: counted at its last one
                return
            self.count += 1
            if self.running:
                transport.send(text, self.payload)

        def on_ws_disconnected(self, transport: Any) -> None:
            self.running = False

    return WsLoad


def _check(check: str, command: str, sample: bytes | None) -> str:
    """Is a reply what it should be? (one sample per run, outside the counting)"""
    if sample is None:
        return "no reply"
    try:
        if check == "echo":
            return "ok"
        if check == "binary":
            from jalien.wire import codec
            from jalien.wire.messages import Reply

            reply = codec.decode_msgpack(sample)
            assert type(reply) is Reply and reply.exitcode == 0
            if not reply.results and reply.entries:  # a listing: typed rows
                return "ok"
            message = reply.results[0]["message"]
        else:
            import msgspec

            reply = msgspec.json.decode(sample)
            assert reply["metadata"]["exitcode"] == "0"
            message = reply["results"][0]["message"]
        assert message == "pong" if command == "ping" else message
        return "ok"
    except Exception as exc:
        return f"bad reply ({type(exc).__name__}: {exc}) {sample[:120]!r}"


def _connector(job: dict[str, Any], context: ssl.SSLContext | None) -> Any:
    """connect() -> (transport, counting protocol) for the job's mode."""
    loop = asyncio.get_running_loop()
    depth, port = job["depth"], job["port"]
    if job["mode"] == "binary":
        ring, size = _ring(job["command"], depth, job.get("options"))

        async def connect() -> tuple[Any, Any]:
            return await loop.create_connection(
                lambda: BinaryLoad(ring, size, depth), HOST, port, ssl=context
            )

        return connect
    from picows import ws_connect

    ws_load = _ws_load_class()
    import json

    payload = json.dumps({"command": job["command"], "options": job.get("options", [])}).encode()
    url = f"{'wss' if context is not None else 'ws'}://{HOST}:{port}{WS_PATH}"

    async def connect() -> tuple[Any, Any]:
        return await ws_connect(
            lambda: ws_load(payload, depth),
            url,
            ssl_context=context,
            websocket_handshake_timeout=10,
        )

    return connect


def _close(mode: str, transport: Any) -> None:
    with contextlib.suppress(Exception):
        if mode == "binary":
            transport.abort()
        else:
            transport.disconnect(graceful=False)


async def _drive(job: dict[str, Any], server_cpu: Any) -> dict[str, Any]:
    tls = job["tls"]
    context = None
    if tls is not None:
        from jalien.auth.tls import client_context

        context = client_context(tls["cert"], tls["key"], tls["ca_dir"])
    connect = _connector(job, context)
    pairs = await asyncio.gather(*(connect() for _ in range(job["connections"])))
    loads = [protocol for _transport, protocol in pairs]
    try:
        await asyncio.sleep(job["warmup"])
        spinners = job["spin_pids"]
        pids = job.get("server_pids") or [job["server_pid"]]  # a jcentral's workers: all

        def server_seconds() -> float:
            return sum(server_cpu(p) for p in pids)

        c0 = sum(p.count for p in loads)
        m0, x0 = machine_busy(), sum(server_cpu(p) for p in spinners)
        s0, g0, t0 = server_seconds(), time.process_time(), time.perf_counter()
        await asyncio.sleep(job["duration"])
        c1 = sum(p.count for p in loads)
        s1, g1, t1 = server_seconds(), time.process_time(), time.perf_counter()
        m1, x1 = machine_busy(), sum(server_cpu(p) for p in spinners)
    finally:
        for p in loads:
            p.running = False
        for transport, _protocol in pairs:
            _close(job["mode"], transport)
    await asyncio.sleep(0.05)  # let the closes go out
    return {
        "count": c1 - c0,
        "wall": t1 - t0,
        "server_cpu": s1 - s0,
        "gen_cpu": g1 - g0,
        # everything else the machine ran meanwhile (other users' jobs, kernel threads)
        "other_cpu": max(0.0, (m1 - m0) - (s1 - s0) - (g1 - g0) - (x1 - x0)),
        "check": _check(job["check"], job["command"], loads[0].sample),
    }


def loadgen_main(conn: Any, pinned: bool = True) -> None:
    """Entry point of the load generator process: runs jobs until told to stop; *pinned*:
    on its own core (LOADGEN_SLOT), else wherever the kernel puts it."""
    where = pin(LOADGEN_SLOT) if pinned else "unpinned"
    import uvloop

    clock_name, server_cpu = cpu_clock()
    conn.send(("ready", where, clock_name))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            result = uvloop.run(asyncio.wait_for(_drive(job, server_cpu), job["timeout"]))
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


# -- orchestration --------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(ctx: Any, kind: str, tls: dict[str, str] | None, lifetime: float) -> Any:
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=server_main, args=(kind, tls, child, lifetime), name=f"bench-{kind}", daemon=True
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError(f"{kind} server did not start")
        _ready, pid, ports = parent.recv()
        yield pid, ports
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()


class Scenario:
    def __init__(
        self,
        name: str,
        server: str,
        mode: str,
        depth: int,
        check: str,
        tls: bool = False,
        baseline: str = "",
        target: str = "",
        per_core_min: float = 0.0,
        ratio_min: float = 0.0,
    ) -> None:
        self.name = name
        self.server = server
        self.mode = mode
        self.depth = depth
        self.check = check
        self.tls = tls
        self.baseline = baseline
        self.target = target
        self.per_core_min = per_core_min
        self.ratio_min = ratio_min
        self.rounds: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}  # the median round
        self.spread = 0.0  # (best - worst) / best req/s over the rounds

    @property
    def rate(self) -> float:
        r = self.result
        return r["count"] / r["wall"] if r.get("wall") else 0.0

    @property
    def server_load(self) -> float:
        r = self.result
        return r["server_cpu"] / r["wall"] if r.get("wall") else 0.0

    @property
    def gen_load(self) -> float:
        r = self.result
        return r["gen_cpu"] / r["wall"] if r.get("wall") else 0.0

    @property
    def other_load(self) -> float:
        r = self.result
        return r["other_cpu"] / r["wall"] if r.get("wall") else 0.0

    @property
    def per_core(self) -> float:
        load = self.server_load
        return self.rate / load if load > 0 else 0.0

    @property
    def limit(self) -> str:
        if "error" in self.result or not self.result:
            return "-"
        server, gen = self.server_load >= BUSY, self.gen_load >= BUSY
        if server and gen:
            return "both"
        if gen:
            return "LOADGEN"
        if server:
            return "server"
        return "shared" if self.other_load > NOISY else "latency"


SCENARIOS = [
    Scenario("echo 8x1", "echo", "binary", 1, "echo"),
    Scenario("echo 8x64", "echo", "binary", PIPELINE, "echo"),
    Scenario(
        "binary 8x1",
        "jalien",
        "binary",
        1,
        "binary",
        baseline="echo 8x1",
        target=">=100k/core",
        per_core_min=100e3,
    ),
    Scenario(
        "binary 8x64",
        "jalien",
        "binary",
        PIPELINE,
        "binary",
        baseline="echo 8x64",
        target=">=400k/core",
        per_core_min=400e3,
    ),
    Scenario(
        "ws json 8x1",
        "jalien",
        "ws",
        1,
        "json",
        baseline="websockets 8x1",
        target=">=100k/core, >=3x",
        per_core_min=100e3,
        ratio_min=3.0,
    ),
    Scenario("websockets 8x1", "websockets", "ws", 1, "json"),
    Scenario(
        "binary 8x1 TLS",
        "jalien",
        "binary",
        1,
        "binary",
        tls=True,
        baseline="binary 8x1",
        target=">=0.5x",
        ratio_min=0.5,
    ),
    Scenario(
        "ws json 8x1 TLS",
        "jalien",
        "ws",
        1,
        "json",
        tls=True,
        baseline="ws json 8x1",
        target=">=0.5x",
        ratio_min=0.5,
    ),
]


def _k(value: float) -> str:
    return f"{value / 1e3:,.1f}k"


def report(scenarios: list[Scenario]) -> None:
    by_name = {s.name: s for s in scenarios}
    w = max(15, *(len(s.name) for s in scenarios))  # the name column
    v = max(14, *(len(s.baseline or "") for s in scenarios))  # the baseline column
    header = (
        f"{'scenario':{w}s} {'req/s':>8s} {'srv CPU':>7s} {'req/s/core':>10s} {'gen CPU':>7s} "
        f"{'other':>5s} {'spread':>6s} {'limit':>7s} {'ratio':>6s}  {'vs':{v}s} {'target':17s} met"
    )
    print(header)
    print("-" * len(header))
    for s in scenarios:
        if "error" in s.result or not s.result:
            print(f"{s.name:{w}s} error: {s.result.get('error', 'not run')}")
            continue
        ratio_text, ratio = "", None
        base = by_name.get(s.baseline)
        if base is not None and base.per_core > 0 and "error" not in base.result:
            ratio = s.per_core / base.per_core
            ratio_text = f"{ratio:.2f}x"
        met = ""
        if s.target:
            ok = s.per_core >= s.per_core_min
            if s.ratio_min:
                ok = ok and ratio is not None and ratio >= s.ratio_min
            met = "yes" if ok else "no"
        check = "" if s.result["check"] == "ok" else f"  [{s.result['check']}]"
        print(
            f"{s.name:{w}s} {_k(s.rate):>8s} {s.server_load:7.0%} {_k(s.per_core):>10s} "
            f"{s.gen_load:7.0%} {s.other_load:5.0%} {s.spread:6.0%} {s.limit:>7s} "
            f"{ratio_text:>6s}  {s.baseline or '(baseline)':{v}s} {s.target or '-':17s} "
            f"{met}{check}"
        )
    print(
        "\nreq/s/core = req/s / (server CPU s / wall s); ratios compare req/s/core; CPU in % "
        "of one core;\nother = CPU of every other process of the machine in the window; "
        "spread = (best - worst) / best req/s over the rounds.\n"
        f"limit: the side >= {BUSY:.0%} busy: server, LOADGEN (the load generator, not the "
        "server, is saturated), both, shared (neither, other processes busy) or latency "
        "(neither: round trips bound)."
    )
    starved = [s.name for s in scenarios if s.limit in ("LOADGEN", "both")]
    if starved:
        print(
            "load generator saturated (req/s is a lower bound of the server's): "
            + ", ".join(starved)
        )
    noisy = [f"{s.name} ({s.other_load:.0%})" for s in scenarios if s.other_load > NOISY]
    if noisy:
        print("machine busy with other work, figures disturbed: " + ", ".join(noisy))


def run_all(
    ctx: Any,
    gen_conn: Any,
    tls: tuple[dict[str, str], dict[str, str]],
    timing: dict[str, Any],
    command: str,
    spin_pids: list[int],
) -> None:
    """Every server kind runs at once (idle ones cost nothing); the scenarios take turns
    for timing["rounds"] rounds, so that a disturbance of the machine hits them alike.
    Each scenario reports its median round (by req/s)."""
    server_tls, client_tls = tls
    with contextlib.ExitStack() as stack:
        servers: dict[tuple[str, bool], tuple[int, dict[str, int]]] = {}
        for s in SCENARIOS:
            key = (s.server, s.tls)
            if key not in servers:
                servers[key] = stack.enter_context(
                    running_server(ctx, s.server, server_tls if s.tls else None, timing["lifetime"])
                )
        for round_ in range(timing["rounds"]):
            for s in SCENARIOS:
                pid, ports = servers[(s.server, s.tls)]
                job = {
                    "mode": s.mode,
                    "port": ports["binary" if s.mode == "binary" else "websocket"],
                    "connections": CONNECTIONS,
                    "depth": s.depth,
                    "warmup": timing["warmup"],
                    "duration": timing["window"],
                    "tls": client_tls if s.tls else None,
                    "server_pid": pid,
                    "check": s.check,
                    "command": command,
                    "spin_pids": spin_pids,
                    "timeout": timing["window"] + timing["warmup"] + 30,
                }
                gen_conn.send(job)
                if not gen_conn.poll(job["timeout"] + 10):
                    raise RuntimeError(f"{s.name}: load generator does not answer")
                s.rounds.append(gen_conn.recv())
            print(f"  round {round_ + 1}/{timing['rounds']} done", file=sys.stderr, flush=True)
    settle(SCENARIOS)


def settle(scenarios: list[Scenario]) -> None:
    """Each scenario's figure: its median round by req/s, and the spread of its rounds."""
    for s in scenarios:
        good = [r for r in s.rounds if "error" not in r and r["wall"] > 0]
        ordered = sorted(good, key=lambda r: r["count"] / r["wall"])
        s.result = ordered[len(ordered) // 2] if good else s.rounds[-1]
        rates = [r["count"] / r["wall"] for r in good]
        s.spread = (max(rates) - min(rates)) / max(rates) if len(rates) > 1 and max(rates) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="window = 3 s * scale")
    parser.add_argument(
        "--command", choices=("ping", "pwd"), default="ping", help="the command requested"
    )
    parser.add_argument(
        "--no-spin", action="store_true", help="let idle bench cores halt (see spinning())"
    )
    args = parser.parse_args()
    duration = max(0.2, 3.0 * args.scale)  # measured, per scenario
    rounds = max(1, min(5, int(duration / 0.6)))  # 0.6 s windows at least
    window = duration / rounds
    warmup = max(0.05, min(0.2, window / 4))
    timing = {
        "rounds": rounds,
        "window": window,
        "warmup": warmup,
        "lifetime": 120.0 + rounds * len(SCENARIOS) * (window + warmup + 15),
    }

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.gridpki
    from jalien.wire import framing
    from tests.gridpki import make_grid_pki

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_net_") as tmp:
        pki = make_grid_pki(Path(tmp) / "pki")
        server_tls = {
            "cert": str(pki.host_cert),
            "key": str(pki.host_key),
            "ca_dir": str(pki.ca_dir),
            "accounts": str(pki.accounts),
        }
        user = pki.users["jdoe"]
        client_tls = {"cert": str(user.cert), "key": str(user.key), "ca_dir": str(pki.ca_dir)}

        gen_conn, gen_child = ctx.Pipe()
        gen = ctx.Process(target=loadgen_main, args=(gen_child,), name="bench-load", daemon=True)
        gen.start()
        gen_child.close()
        try:
            with spinning(not args.no_spin, timing["lifetime"]) as spun:
                if not gen_conn.poll(60):
                    raise RuntimeError("load generator did not start")
                _ready, gen_where, clock_name = gen_conn.recv()
                print(
                    f"== network: `{args.command}`, {CONNECTIONS} connections, median of {rounds} "
                    f"x {window:.2f} s windows (each after {warmup:.2f} s warm-up), framing "
                    f"{framing.IMPLEMENTATION}; "
                    f"server on {_slot_name(SERVER_SLOT)}, load generator on {gen_where}, "
                    f"{'idle cores kept awake' if spun else 'idle cores may halt'}; server "
                    f"CPU from {clock_name}",
                    flush=True,
                )
                run_all(ctx, gen_conn, (server_tls, client_tls), timing, args.command, spun)
        finally:
            with contextlib.suppress(OSError):
                gen_conn.send(None)
            gen.join(10)
            if gen.is_alive():
                gen.terminate()
                gen.join(5)
            if gen.is_alive():
                gen.kill()
                gen.join()
            gen_conn.close()
    report(SCENARIOS)


if __name__ == "__main__":
    main()
