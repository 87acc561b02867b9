"""Catalogue backends to run the same suite against: SQLite always, MariaDB when a
server can be started (tests/catalogue/mariadb_servers.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend


@dataclass(frozen=True)
class User:
    login: str
    roles: tuple[str, ...] = ("users",)


JDOE = User("jdoe")
ALICE = User("alice")
ADMIN = User("admin", ("users", "admin"))


def _backend_params():
    return [pytest.param("sqlite", id="sqlite")]


@pytest.fixture(params=_backend_params())
async def backend(request, tmp_path):
    if request.param == "sqlite":
        be = SQLiteBackend(tmp_path / "catalogue.db")
    await be.start()
    yield be
    await be.close()


@pytest.fixture
async def catalogue(backend):
    cat = Catalogue(backend)
    await cat.ensure_home("jdoe")
    await cat.ensure_home("alice")
    return cat
