"""The shared cache in real jcentral processes: two processes of a host share one LMDB
directory (TextCache HTTP and the binary channel), the catalogue's answers are cached there,
and what was committed survives a kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from urllib.parse import urlencode

import pytest

from jalien.auth.tls import client_context
from jalien.cache.client import RemoteCache
from jalien.net.client import Client
from tests.integration.conftest import free_port, run_setup, start_central, stop

pytestmark = pytest.mark.integration


def http(port: int, **params: str) -> str:
    url = f"http://127.0.0.1:{port}/TextCache?{urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def _start(home, log, cache_dir, http_port, monkeypatch):
    monkeypatch.setenv("JALIEN_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("JALIEN_CACHE_HTTP_PORT", str(http_port))
    ws, binary = free_port(), free_port()
    return start_central(home, log, ws, binary), binary


async def _remote(home, globus, port):
    client = Client(
        "127.0.0.1",
        port,
        client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates"),
        reconnect=False,
    )
    await client.connect()
    return client


def test_two_jcentral_processes_share_the_cache(tmp_path, monkeypatch):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    cache_dir = tmp_path / "shared-cache"
    port_a, port_b = free_port(), free_port()
    a, binary_a = _start(home, tmp_path / "a.log", cache_dir, port_a, monkeypatch)
    b, binary_b = _start(home, tmp_path / "b.log", cache_dir, port_b, monkeypatch)
    try:
        assert http(port_a, ns="jobs", key="42", value="running", timeout="600") == ""
        for _ in range(100):  # B sees A's write once A's writer committed it
            if http(port_b, ns="jobs", key="42") == "running\n":
                break
            asyncio.run(asyncio.sleep(0.02))
        assert http(port_b, ns="jobs", key="42") == "running\n"
        assert http(port_b, ns="catalogue.find", key="x").startswith("ERR: namespace")

        async def binary_channel() -> None:
            client_a = await _remote(home, globus, binary_a)
            client_b = await _remote(home, globus, binary_b)
            try:
                await RemoteCache(client_a).set("bin", b"\x00k", b"\xff\x00v", sync=True)
                for _ in range(100):
                    if await RemoteCache(client_b).get("bin", b"\x00k") == b"\xff\x00v":
                        break
                    await asyncio.sleep(0.02)
                assert await RemoteCache(client_b).get("bin", b"\x00k") == b"\xff\x00v"
                # the catalogue's find answer is cached in the shared store
                await client_a.call("mkdir", "-p", "cached")
                await client_a.call("touch", "cached/a.root")
                for _ in range(2):
                    found = await client_a.call("find", "cached", "*.root")
                    assert found.exitcode == 0 and len(found.results) == 1
                stats = await client_a.call("cachestats")
                row = next(r for r in stats.results if r["namespace"] == "catalogue.find")
                assert int(row["hits"]) >= 1
            finally:
                await client_a.close()
                await client_b.close()

        asyncio.run(binary_channel())
    finally:
        stop(b)
        a.send_signal(signal.SIGKILL)  # what A committed must survive this
        a.wait(30)
    c, _ = _start(home, tmp_path / "c.log", cache_dir, port_a, monkeypatch)
    try:
        assert http(port_a, ns="jobs", key="42") == "running\n"
    finally:
        stop(c)
    assert "Traceback" not in (tmp_path / "c.log").read_text()
    assert os.path.isdir(cache_dir)
