"""Where a peer is: on this host (loopback, a Unix socket) or across a network.

Compression of the binary channel is for links where bytes cost: to a peer on this host a
byte costs a copy, and zlib only burns CPU on both sides (a ``stat`` of 1000 LFNs: ~15% of
the server's CPU; bench/bench_requests.py measures both)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """*host* (a name or an address) is this host's loopback."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def on_this_host(transport: asyncio.BaseTransport) -> bool:
    """The transport's peer is on this host: a Unix socket, or a loopback address."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        return True
    peer = transport.get_extra_info("peername")
    return isinstance(peer, tuple) and bool(peer) and is_loopback(str(peer[0]))
