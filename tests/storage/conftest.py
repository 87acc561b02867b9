"""A server with the catalogue and storage commands on a fresh SQLite catalogue, with SEs."""

from __future__ import annotations

import msgspec
import pytest

from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.model import StorageElement
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.catalogue_cmds import CatalogueCommands
from jalien.commands.storage_cmds import StorageCommands
from jalien.storage.envelope import EnvelopeSigner

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
async def data_server(make_server, tmp_path, signer):
    backend = SQLiteBackend(tmp_path / "served.db")
    await backend.start()
    cat = Catalogue(backend, cache=MemoryCache())
    for number, se in enumerate(TEST_SES, 1):
        await backend.put_se(msgspec.structs.replace(se, number=number))

    def add(table):
        CatalogueCommands(table, cat).register()
        StorageCommands(table, cat, signer).register()

    server = await make_server(add_commands=add)
    server.catalogue = cat
    yield server
    await backend.close()
