"""A real jcentral and a binary client that asks for big listings and never reads: the
server's memory stays bounded (found on a real grid: 135 MiB -> 1.2 GiB), and it goes on
serving others meanwhile and after."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from jalien.auth.tls import client_context
from jalien.catalogue.model import Entry
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.net.client import Client
from jalien.wire import codec, framing
from jalien.wire.messages import Request
from jalien.wire.streams import stream_id
from tests.integration.conftest import free_port, run_setup, start_central, stop

BIG = "/alice/data/big"
ENTRIES = 100_000
PIPELINED = 64
LIMIT = 64 * 1024 * 1024


class _Admin:
    login = "admin"
    roles = ("users", "admin")


async def _populate(db: Path) -> None:
    backend = SQLiteBackend(db)
    await backend.start()
    try:
        await Catalogue(backend).mkdir(_Admin(), BIG, parents=True)
        rows = [
            Entry(
                f"{BIG}/",
                f"AO2D_{i:07d}.root",
                "f",
                "755",
                "admin",
                "admin",
                1_000_000 + i,
                1_714_564_800_000 + i,
                f"{i:032x}",
                f"{i:08x}-1234-11ef-8000-0242ac120002",
                0,
            )
            for i in range(ENTRIES)
        ]
        for i in range(0, ENTRIES, 5000):
            await backend.insert(rows[i : i + 5000])
    finally:
        await backend.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def big_central(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("central")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    asyncio.run(_populate(home / "catalogue.db"))
    log = tmp / "jcentral.log"
    ws_port, binary_port = free_port(), free_port()
    proc = start_central(home, log, ws_port, binary_port)
    yield home, globus, binary_port, proc
    stop(proc)


def test_a_client_that_never_reads_keeps_server_memory_bounded(big_central):
    home, globus, port, proc = big_central
    context = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")

    async def go() -> tuple[int, int, int]:
        client = Client("127.0.0.1", port, context, reconnect=False)
        await client.connect()
        warm = await client.call("ls", "-l", BIG, timeout=60)  # the listing works, and warms up
        assert warm.exitcode == 0 and len(warm.entries) + len(warm.results) == ENTRIES
        before = _rss(proc.pid)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname="localhost", limit=4096
        )
        request = codec.encode_msgpack(Request(command="ls", options=["-l", BIG]))
        writer.write(
            b"".join(framing.encode_frame(stream_id(0, i + 1), request) for i in range(PIPELINED))
        )
        await writer.drain()
        reader._transport.pause_reading()  # type: ignore[attr-defined]
        # the event: the server's memory stops moving (it waits for the client to read);
        # bounded loop, the highest figure seen is the one that counts
        peak = last = before
        steady = 0
        deadline = time.monotonic() + 60
        while steady < 15 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = _rss(proc.pid)
            peak = max(peak, now)
            steady = steady + 1 if abs(now - last) < 256 * 1024 else 0
            last = now
        # meanwhile the server answers others
        assert (await client.call("pwd", timeout=10)).exitcode == 0
        writer.close()
        await client.close()
        return before, peak, steady

    before, peak, steady = asyncio.run(go())
    growth = peak - before
    print(f"jcentral VmRSS {before / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} MiB")
    assert steady >= 15, "jcentral's memory never settled"
    assert growth <= LIMIT, f"grew {growth / 2**20:.0f} MiB (limit {LIMIT / 2**20:.0f})"
    assert proc.poll() is None
