"""alien.py 1.7.0 browsing, creating and removing catalogue entries of a jcentral process,
with its exit codes; and a kill -9 of jcentral during writes loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.test_jcentral_process import alien

pytestmark = pytest.mark.integration
HOME = "/alice/cern.ch/user/j/jdoe/"


def test_alienpy_catalogue_session(alienpy, central, tmp_path):
    def a(*args):
        done = alien(alienpy, central, *args, tmp_path=tmp_path)
        return done.returncode, (done.stdout + done.stderr).strip()

    assert a("mkdir", "-p", "ana/run1") == (0, "")
    assert a("touch", "ana/run1/AO2D.root") == (0, "")
    assert a("ls", "ana") == (0, "run1/")
    code, out = a("ls", "-l", "ana/run1")
    assert code == 0 and out.startswith("-rwxr-xr-x") and out.endswith("AO2D.root")
    code, out = a("stat", "ana/run1/AO2D.root")
    assert code == 0 and f"File: {HOME}ana/run1/AO2D.root" in out
    assert a("find", "ana", ".root") == (0, f"{HOME}ana/run1/AO2D.root")
    code, out = a("ls", "nothing-here")
    assert code == 2 and "No such file or directory" in out
    code, out = a("whereis", "ana/run1/AO2D.root")
    assert code == 67  # no replicas: a lost file, as JAliEn says
    assert a("rm", "ana/run1/AO2D.root") == (0, "")
    code, _ = a("stat", "ana/run1/AO2D.root")
    assert code == 2
    code, out = a("rmdir", "ana")
    assert code == 5  # not empty
    assert a("rm", "-r", "ana")[0] == 0
    assert a("ls")[0] == 0


def test_alienpy_cd_exit_codes(alienpy, central, tmp_path):
    def a(*args):
        done = alien(alienpy, central, *args, tmp_path=tmp_path)
        return done.returncode, done.stdout.strip()

    assert a("mkdir", "-p", "nav/deeper")[0] == 0
    assert a("touch", "nav/file")[0] == 0
    assert a("cd", "nav")[0] == 0
    assert a("cd", "/no/such/dir")[0] == 2
    assert a("cd", "nav/file")[0] == 20
    assert a("ls", "nav") == (0, "deeper/\nfile")


def test_kill9_loses_nothing_acknowledged(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    ws, binary = free_port(), free_port()
    proc = start_central(home, tmp_path / "log", ws, binary)
    context = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    acknowledged: list[str] = []

    async def writer():
        client = Client("127.0.0.1", binary, context, reconnect=False)
        await client.connect()
        await client.call("mkdir", "-p", "k9")

        async def one(i):
            reply = await client.call("touch", f"k9/f{i:05d}")
            if reply.exitcode == 0:
                acknowledged.append(f"f{i:05d}")

        tasks = [asyncio.ensure_future(one(i)) for i in range(3000)]
        await asyncio.sleep(0.3)
        while len(acknowledged) < 50:
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    asyncio.run(writer())
    proc.wait(10)
    assert acknowledged
    proc = start_central(home, tmp_path / "log2", ws, binary)
    try:

        async def names():
            client = Client("127.0.0.1", binary, context, reconnect=False)
            await client.connect()
            reply = await client.call("ls", "k9")
            await client.close()
            return {e.name for e in reply.entries}

        present = asyncio.run(names())
        assert set(acknowledged) <= present
    finally:
        stop(proc)


def test_alienpy_listing_compressed(alienpy, central, tmp_path):
    """alien.py offers permessage-deflate: ls -l of a big directory comes back compressed
    (the server's log counts the compressed replies of the connection) and complete."""
    context = client_context(
        central.globus / "usercert.pem", central.globus / "userkey.pem", central.ca_dir
    )

    async def fill():
        client = Client("127.0.0.1", central.binary_port, context, reconnect=False)
        await client.connect()
        assert (await client.call("mkdir", "-p", "zbig")).exitcode == 0
        replies = await asyncio.gather(
            *(client.call("touch", f"zbig/file{i:04d}.root") for i in range(400))
        )
        assert all(r.exitcode == 0 for r in replies)
        await client.close()

    asyncio.run(fill())
    done = alien(alienpy, central, "ls", "-l", "zbig", tmp_path=tmp_path)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(lines) == 400 and lines[-1].endswith("file0399.root")
    deadline = time.monotonic() + 20  # the server logs the close after alien.py's exit
    while True:
        log = central.log_text()
        counted = [line for line in log.splitlines() if "replies compressed" in line]
        if any(" 0 replies compressed" not in line for line in counted):
            break
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(0.05)
    assert "(websocket, jdoe): permessage-deflate" in log
