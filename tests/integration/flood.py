"""One user flooding a jcentral while another asks small questions: the measurement behind
tests/integration/test_fairness_process.py and bench/bench_requests.py's fairness section.

The flooder runs in its own process (niced: the question is the server's fairness, not how
the client processes share the CPU): *connections* binary connections, each with *depth*
requests always in flight (``ls -l`` of a big directory), replies taken raw (not decoded).
The other user asks ``ls`` of a small directory in a loop, one at a time, on one connection,
and records each wall time: alone, then during the flood.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from jalien.auth.tls import context_from_pem
from jalien.net.client import Client
from jalien.wire import codec
from jalien.wire.errors import EXIT_BUSY
from jalien.wire.messages import Request


@dataclass
class Pems:
    cert: bytes
    key: bytes
    ca_dir: str


async def _connect(port: int, pems: Pems) -> Client:
    context = context_from_pem("client", pems.cert, pems.key, pems.ca_dir)
    client = Client("127.0.0.1", port, context, reconnect=False)
    await client.connect()
    return client


async def _flood(
    port: int, pems: Pems, connections: int, depth: int, words: list[str], flooding: Any,
    stop: Any, counts: Any, limit: float,
) -> None:  # fmt: skip
    clients = [await _connect(port, pems) for _ in range(connections)]
    body = codec.encode_msgpack(Request(command=words[0], options=words[1:]))
    deadline = time.monotonic() + limit
    busy = b"exitcode\x0b"  # msgpack: the key, then 11 as a positive fixint

    async def worker(client: Client) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            frames = await client.main.forward(0, body, timeout=120)
            with counts.get_lock():
                counts[0] += 1
                if any(busy in raw for _flags, raw in frames[-1:]):
                    counts[1] += 1
            if counts[0] >= connections:
                flooding.set()

    try:
        await asyncio.gather(*(worker(c) for c in clients for _ in range(depth)))
    finally:
        for client in clients:
            await client.close()


def _flood_main(*args: Any) -> None:
    os.nice(10)
    asyncio.run(_flood(*args))


async def small_questions(client: Client, words: list[str], n: int) -> list[float]:
    """*n* wall times (s) of *words*, one at a time."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = await client.call(*words, timeout=60)
        times.append(time.perf_counter() - t0)
        assert reply.exitcode == 0, reply.error
    return times


def p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class Fairness:
    alone_p50: float  # ms
    alone_p99: float
    flood_p50: float
    flood_p99: float
    flood_replies: int  # the flooder's replies during the measurement
    flood_busy: int  # of which busy answers (EXIT_BUSY)
    flood_seconds: float

    @property
    def ratio(self) -> float:
        return self.flood_p99 / self.alone_p99 if self.alone_p99 else float("inf")


def measure(
    port: int, victim: Pems, flooder: Pems, small: list[str], big: list[str], *,
    n: int = 300, connections: int = 16, depth: int = 64, limit: float = 120.0,
) -> Fairness:  # fmt: skip
    """The other user's wall times alone and during the flood (p50, p99 in ms): *n*
    questions alone, at least *n* during the flood and as many more as it takes for the
    flood to complete a reply meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    flooding, stop = ctx.Event(), ctx.Event()
    counts = ctx.Array("l", 2)

    async def run() -> Fairness:
        client = await _connect(port, victim)
        try:
            await small_questions(client, small, max(20, n // 10))  # warm
            alone = await small_questions(client, small, n)
            proc = ctx.Process(
                target=_flood_main,
                args=(port, flooder, connections, depth, big, flooding, stop, counts, limit),
                daemon=True,
            )
            proc.start()
            try:
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(None, flooding.wait, limit)
                assert ok, "the flood did not start"
                start_replies, start_busy = counts[0], counts[1]
                t0 = time.perf_counter()
                during = await small_questions(client, small, n)
                while counts[0] == start_replies and time.perf_counter() - t0 < limit:
                    # the flood's replies are big and interleaved page by page: when the
                    # other user is quick, n questions may be over before any one of them
                    # completes; the measurement then lasts until one has
                    during += await small_questions(client, small, max(1, n // 10))
                seconds = time.perf_counter() - t0
                replies, busy = counts[0] - start_replies, counts[1] - start_busy
                assert proc.is_alive(), "the flood ended before the measurement did"
            finally:
                stop.set()
                await loop.run_in_executor(None, proc.join, 60)
                if proc.is_alive():
                    proc.kill()
        finally:
            await client.close()
        ms = 1000.0
        return Fairness(
            statistics.median(alone) * ms, p99(alone) * ms, statistics.median(during) * ms,
            p99(during) * ms, replies, busy, seconds,
        )  # fmt: skip

    return asyncio.run(run())


__all__ = ["EXIT_BUSY", "Fairness", "Pems", "measure", "p99", "small_questions"]
