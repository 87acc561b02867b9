"""A server with the catalogue and storage commands on a fresh SQLite catalogue, with SEs
served by a real embedded SE (one StorageServer on loopback: each SE a path below it), so
that ``commit`` asks it what was stored."""

from __future__ import annotations

import msgspec
import pytest

from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.model import StorageElement
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.catalogue_cmds import CatalogueCommands, home_preparer
from jalien.commands.storage_cmds import StorageCommands
from jalien.storage.envelope import EnvelopeSigner
from jalien.storage.se_server import StorageServer, se_context

TEST_SES = [
    StorageElement(name="ALICE::TEST::DISK1", url="https://127.0.0.1:1/se1", site="TEST",
                   qos=["disk"], capacity=10**9),
    StorageElement(name="ALICE::FAR::DISK2", url="https://127.0.0.1:1/se2", site="FAR",
                   qos=["disk"], capacity=10**9),
    StorageElement(name="ALICE::FAR::TAPE", url="https://127.0.0.1:1/tape", site="FAR",
                   qos=["tape"], capacity=10**9),
]  # fmt: skip


@pytest.fixture
def signer(tmp_path):
    return EnvelopeSigner.load_or_create(tmp_path / "envelope")[0]


@pytest.fixture
async def embedded_se(tmp_path, grid_pki, signer):
    se = StorageServer(tmp_path / "se", signer.verifier)
    context = se_context(grid_pki.host_cert, grid_pki.host_key)
    se.base = f"https://127.0.0.1:{await se.start(['127.0.0.1'], 0, context)}"
    yield se
    await se.close()


@pytest.fixture
async def data_server(make_server, tmp_path, signer, embedded_se, grid_pki):
    backend = SQLiteBackend(tmp_path / "served.db")
    await backend.start()
    cat = Catalogue(backend, cache=MemoryCache())
    for number, se in enumerate(TEST_SES, 1):
        url = se.url.replace("https://127.0.0.1:1", embedded_se.base)
        await backend.put_se(msgspec.structs.replace(se, number=number, url=url))
    commands = []

    def add(table):
        CatalogueCommands(table, cat).register()
        storage = StorageCommands(table, cat, signer, str(grid_pki.ca_dir))
        storage.register()
        commands.append(storage)

    server = await make_server(add_commands=add, prepare=home_preparer(cat))
    server.catalogue = cat
    server.se = embedded_se
    server.storage = commands[0]
    yield server
    for storage in commands:
        await storage.close()
    await backend.close()
