"""net.peers: a peer on this host (loopback, Unix socket) or across a network."""

from __future__ import annotations

import socket

import pytest

from jalien.net.peers import is_loopback, on_this_host


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 peer on a dual-stack socket
        ("localhost", True),
        ("fe80::1%eth0", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host, local):
    assert is_loopback(host) is local


class _Transport:
    def __init__(self, **extra):
        self.extra = extra

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)


def test_on_this_host():
    assert on_this_host(_Transport(peername=("127.0.0.1", 5000)))
    assert on_this_host(_Transport(peername=("::1", 5000, 0, 0)))
    assert not on_this_host(_Transport(peername=("192.0.2.7", 5000)))
    assert not on_this_host(_Transport())  # a transport of its own kind (the spool): unknown
    with socket.socket(socket.AF_UNIX) as unix:
        assert on_this_host(_Transport(socket=unix, peername=""))
