"""Fixtures of the network tests (see tests/servers.py)."""

from tests.servers import connect, make_server, server_log, ssl_for  # noqa: F401
