"""Catalogue backends to run the same suite against: SQLite always, MariaDB when a
server can be started (tests/catalogue/mariadb_servers.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from tests.catalogue.mariadb_servers import mariadb_dsns, mariadb_servers  # noqa: F401


@dataclass(frozen=True)
class User:
    login: str
    roles: tuple[str, ...] = ("users",)


JDOE = User("jdoe")
ALICE = User("alice")
ADMIN = User("admin", ("users", "admin"))


def _backend_params():
    return [
        pytest.param("sqlite", id="sqlite"),
        # jcentral's default: reads on the loop's thread, answers kept until a commit
        pytest.param("sqlite-kept", id="sqlite-kept"),
        pytest.param("mariadb", id="mariadb"),
    ]


# The contract suite's paths cross shards on MariaDB: server 2 holds /a/, /big/, /c/, /q/
# and /r/s/; /m/n/ is a second table on server 1.
MARIADB_PREFIXES = {"/a/": 1, "/big/": 1, "/c/": 1, "/q/": 1, "/r/s/": 1, "/m/n/": 0}


@pytest.fixture(params=_backend_params())
async def backend(request, tmp_path):
    if request.param == "sqlite":
        be = SQLiteBackend(tmp_path / "catalogue.db")
    elif request.param == "sqlite-kept":
        be = SQLiteBackend(tmp_path / "catalogue.db", inline_reads=True, kept_reads=True)
    else:
        from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

        dsns = request.getfixturevalue("mariadb_dsns")
        be = MariaDBBackend(MariaDBConfig(hosts=dsns, prefixes=MARIADB_PREFIXES))
    await be.start()
    yield be
    await be.close()


@pytest.fixture
async def catalogue(backend):
    cat = Catalogue(backend)
    await cat.ensure_home("jdoe")
    await cat.ensure_home("alice")
    return cat


@pytest.fixture
async def cat_server(make_server, tmp_path):
    """An in-process server with the catalogue commands on a fresh SQLite catalogue."""
    from jalien.catalogue.cache import MemoryCache
    from jalien.commands.catalogue_cmds import CatalogueCommands, home_preparer

    # as jcentral: reads on the loop's thread, answers kept until a commit
    backend = SQLiteBackend(tmp_path / "served.db", inline_reads=True, kept_reads=True)
    await backend.start()
    cat = Catalogue(backend, cache=MemoryCache())
    server = await make_server(
        add_commands=lambda table: CatalogueCommands(table, cat).register(),
        prepare=home_preparer(cat),
    )
    server.catalogue = cat
    yield server
    await backend.close()
