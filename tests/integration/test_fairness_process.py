"""Fairness under load on a real jcentral: bob floods (16 connections x 64 pipelined
``ls -l`` of a directory of 2000 entries), jdoe lists a small directory in a loop; jdoe's
p99 during the flood is compared to jdoe's p99 alone, measured in the same test (the goal
is 2x; the bound here is generous for a shared 2-core machine, bench/bench_requests.py's
fairness section reports the figures)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.flood import Pems, measure
from tests.integration.trustgrid import BOB_HOME, add_bob

pytestmark = pytest.mark.integration
JDOE_HOME = "/alice/cern.ch/user/j/jdoe/"


async def fill(port: int, who: Pems, path: str, n: int) -> None:
    from tests.integration.flood import _connect

    client = await _connect(port, who)
    try:
        assert (await client.call("mkdir", "-p", path, timeout=60)).exitcode == 0
        for start in range(0, n, 500):
            replies = await asyncio.gather(
                *(
                    client.call("touch", f"{path}/f{i:05d}", timeout=60)
                    for i in range(start, min(n, start + 500))
                )
            )
            assert all(r.exitcode == 0 for r in replies)
    finally:
        await client.close()


def test_flood_leaves_another_user_served(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    bob = add_bob(home)
    ca = str(home / "certificates")
    jdoe = Pems((globus / "usercert.pem").read_bytes(), (globus / "userkey.pem").read_bytes(), ca)
    flooder = Pems(bob.cert, bob.key, ca)
    ws, binary = free_port(), free_port()
    proc = start_central(home, tmp_path / "jcentral.log", ws, binary)
    try:
        asyncio.run(fill(binary, jdoe, f"{JDOE_HOME}small", 10))
        asyncio.run(fill(binary, flooder, f"{BOB_HOME}big", 2000))
        got = measure(
            binary, jdoe, flooder, ["ls", f"{JDOE_HOME}small"], ["ls", "-l", f"{BOB_HOME}big"],
            n=200, connections=16, depth=64,
        )  # fmt: skip
        print(got)
        assert got.flood_replies > 0  # the flood was served meanwhile
        # the goal is 2x; generous here (a shared 2-core machine, 3 processes; a page of
        # the flood takes ~4 ms of the loop and cannot be preempted): served FIFO behind the
        # flood, jdoe's p99 was over 4 s
        assert got.flood_p99 <= max(10 * got.alone_p99, got.alone_p99 + 150), got
    finally:
        assert stop(proc) == 0
