"""Free loopback ports for the servers that tests, benches and build scripts start.

One home for the choice. A port picked by binding port 0 comes from the kernel's ephemeral
range, the range every outgoing connection of the machine takes its source port from: between
the pick and the server's own bind, a connection (a Galera node's state transfer, a client of
another test) may take it, and the server fails with EADDRINUSE. CI saw it: a Galera node's
client port taken while the node joined. Ports are chosen here at random *below* the ephemeral
range, where no outgoing connection lands, free on 127.0.0.1 and ::1 when chosen, and never
twice in one process.

As a script: ``python3 tests/ports.py N`` prints N distinct free ports (build/galera/start.sh).
"""

from __future__ import annotations

import functools
import random
import socket
import sys
from pathlib import Path

FLOOR = 20_000  # below: the well-known services of a machine (3306, 5432, 6379, 8080, ...)
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


@functools.cache  # read once per process
def _candidates() -> range | None:
    low, high = _ephemeral_range()
    if low - FLOOR >= 1000:
        return range(FLOOR, low)
    if 65_535 - high >= 1000:
        return range(high + 1, 65_536)
    return None


def _bindable(port: int) -> bool:
    """Nothing holds the port on 127.0.0.1 nor on ::1 (jcentral listens on both)."""
    families = [(socket.AF_INET, "127.0.0.1")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::1"))
    for family, host in families:
        try:
            with socket.socket(family) as s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == 99:  # EADDRNOTAVAIL: no ::1 here
                continue
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range."""
    candidates = _candidates()
    for _ in range(200):
        if candidates is None:  # no room outside the ephemeral range: the kernel's choice
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        else:
            port = random.choice(candidates)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError("no free loopback port")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports."""
    return [free_port() for _ in range(count)]


if __name__ == "__main__":
    print(" ".join(str(p) for p in free_ports(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
