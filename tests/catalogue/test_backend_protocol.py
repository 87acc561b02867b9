"""Both catalogue backends implement CatalogueBackend exactly: same parameters, same types.

mypy checks it too (the `_implements` line at the end of each backend); this test keeps the
rule where pytest runs. The Protocol's list_dir once promised pages of Entry while both
backends yield DirEntry rows (what CatalogueService.listing hands on).
"""

import inspect
import typing

import pytest

from jalien.catalogue.backend import CatalogueBackend
from jalien.catalogue.mariadb_backend import MariaDBBackend
from jalien.catalogue.sqlite_backend import SQLiteBackend

MEMBERS = sorted(
    name
    for name, value in vars(CatalogueBackend).items()
    if not name.startswith("_") and inspect.isfunction(value)
)


def _shape(fn: object) -> tuple[list[tuple[str, object, object]], object]:
    hints = typing.get_type_hints(fn)
    params = [
        (p.name, hints.get(p.name), p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self"
    ]
    return params, hints.get("return")


def test_protocol_has_the_members() -> None:
    assert {"list_dir", "find", "get", "insert", "move"} <= set(MEMBERS)


@pytest.mark.parametrize("backend", [SQLiteBackend, MariaDBBackend], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", MEMBERS)
def test_backend_matches_protocol(backend: type, name: str) -> None:
    want = getattr(CatalogueBackend, name)
    have = getattr(backend, name)
    assert _shape(have) == _shape(want), f"{backend.__name__}.{name} drifted from the Protocol"
    # a coroutine stays a coroutine, an async iterator an async iterator
    assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(want)
