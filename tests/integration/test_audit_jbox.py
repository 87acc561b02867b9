"""The audit log of a real jBox in front of a real jcentral: a failing command from
alien.py (WebSocket) and from `jalien-bin` (binary channel) is a line at the jBox and at
jcentral, with its exit code."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import jalien_bin
from tests.integration.multicentral import until
from tests.integration.test_jbox_process import (  # noqa: F401 - desktop is a fixture
    alien,
    client_env,
    desktop,
    run,
    start_jbox,
)

pytestmark = pytest.mark.integration
MISSING = "/alice/cern.ch/user/j/jdoe/no-such-dir-for-the-audit"


def lines(paths) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def test_jbox_and_central_log_each_request(central, desktop, alienpy):  # noqa: F811
    jbox = start_jbox(central, desktop)
    try:
        by_alienpy = alien(alienpy, central, desktop, "ls", MISSING)
        assert by_alienpy.returncode != 0, by_alienpy.stdout + by_alienpy.stderr
        by_shell = run([*jalien_bin(), "ls", MISSING], client_env(central, desktop), check=False)
        assert by_shell.returncode != 0, by_shell.stdout + by_shell.stderr
    finally:
        jbox.close()  # the jBox writes what is pending as it stops
    at_jbox = lines(sorted((desktop / "home/.jalien/log").glob("audit*.jsonl")))

    def upstream_lines() -> list[dict]:
        # jcentral's writer thread hands its lines to the file every FLUSH_DELAY: the
        # second request's line may come a moment after the jBox stopped (seen in CI)
        found = lines(sorted((central.home / "log").glob("audit*.jsonl")))
        asked = [r for r in found if r["command"] == "ls" and r["args"][-1:] == [MISSING]]
        return found if len(asked) >= 2 else []

    at_central = until(upstream_lines, 30, "jcentral's two lines of ls " + MISSING)
    failed = [r for r in at_jbox if r["command"] == "ls" and r["args"][-1:] == [MISSING]]
    assert {r["personality"] for r in failed} == {"websocket", "binary"}, at_jbox
    assert all(r["level"] == "jbox" and r["login"] == "jdoe" for r in failed)
    assert all(r["exitcode"] == 2 and r["error"] for r in failed), failed
    upstream = [r for r in at_central if r["command"] == "ls" and r["args"][-1:] == [MISSING]]
    assert len(upstream) == 2 and all(r["channel"] > 0 for r in upstream), at_central
    assert all(r["exitcode"] == 2 and r["level"] == "jcentral" for r in upstream)
    # the jBox's own calls (whoami -v, token) are jcentral's lines too
    assert any(r["command"] == "token" and r["channel"] == 0 for r in at_central)
