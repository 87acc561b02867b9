"""tests/ports.py: the free ports that test servers take lie outside the ephemeral range."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests import ports


def test_ports_are_distinct_free_and_outside_the_ephemeral_range():
    low, high = ports._ephemeral_range()
    chosen = ports.free_ports(50)
    assert len(set(chosen)) == 50
    for port in chosen:
        assert not low <= port <= high
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_chosen(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        monkeypatch.setattr(ports, "_candidates", lambda: range(busy, busy + 1))
        monkeypatch.setattr(ports.random, "choice", lambda r: busy)
        assert not ports._bindable(busy)
        try:
            ports.free_port()
        except RuntimeError as exc:
            assert "no free loopback port" in str(exc)
        else:
            raise AssertionError("a port in use was handed out")


def test_the_script_prints_the_ports_asked_for():
    out = subprocess.run(
        [sys.executable, ports.__file__, "12"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(set(out)) == 12 and all(p.isdigit() for p in out)
