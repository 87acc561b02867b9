"""The payload's start: tied to the agent's life by an exec'd setpriv (never by Python code
between fork and exec, which froze an agent's loop: jalien.agent.payload), in a session of
its own, and a clear error when it cannot run."""

from __future__ import annotations

import os
import sys

import pytest

from jalien.agent.payload import Payload, PayloadError, tie_prefix
from jalien.agent.sandbox import Sandbox

SHOW = """
import ctypes, os, signal
libc = ctypes.CDLL(None)
sig = ctypes.c_int()
libc.prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
print(sig.value, os.getsid(0) == os.getpid(), os.getppid())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_the_payload_is_tied_to_this_process_and_in_its_own_session(tmp_path):
    assert tie_prefix(), "setpriv --pdeathsig is part of util-linux on the test machines"
    box = Sandbox(tmp_path, 1).create()
    payload = await Payload.start([sys.executable, "-c", SHOW], box, {})
    assert await payload.wait() == 0
    sig, leader, parent = box.stdout.read_text().split()
    assert int(sig) == 9  # SIGKILL when the agent goes
    assert leader == "True"
    assert int(parent) == os.getpid()  # setpriv exec'd the payload: no process in between


async def test_a_payload_that_cannot_run_says_why(tmp_path):
    box = Sandbox(tmp_path, 2).create()
    with pytest.raises(PayloadError, match="cannot run nowhere-to-be-found: No such file"):
        await Payload.start(["nowhere-to-be-found"], box, {"PATH": "/usr/bin:/bin"})
    script = box.root / "job.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PayloadError, match="Permission denied"):
        await Payload.start([str(script)], box, {})
