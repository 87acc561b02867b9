"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest

from jalien._fast import NO_EXTENSIONS, framing_py

# jcentral processes the tests start are single processes unless a test asks for workers
# (tests/integration/test_workers_process.py): their checks read one process's audit log,
# metrics, loops and in-memory picture
os.environ.setdefault("JALIEN_WORKERS", "1")

# in-process servers with real TLS: make_server, connect, ssl_for, server_log
pytest_plugins = ["tests.servers"]


def _twins():
    twins = [pytest.param(framing_py, id="py")]
    try:
        from jalien._fast import framing_c
    except ImportError:
        framing_c = None
    if framing_c is not None and not NO_EXTENSIONS:
        twins.append(pytest.param(framing_c, id="c"))
    elif not NO_EXTENSIONS:
        twins.append(pytest.param(None, id="c", marks=pytest.mark.skip("framing_c not built")))
    return twins


@pytest.fixture(params=_twins(), scope="session")
def framing(request):
    """Each framing twin in turn: every wire test is written once and run against both."""
    return request.param


@pytest.fixture(scope="session")
def grid_pki(tmp_path_factory):
    """The test grid's CA, host and users (see tests/gridpki.py)."""
    from tests.gridpki import make_grid_pki

    return make_grid_pki(tmp_path_factory.mktemp("grid"))
