"""The layering rules of docs/ARCHITECTURE.md, checked on the source (imports point down).

Every import inside the jalien package is read with ``ast`` (function-level imports too),
so a role imported by a service, or picows outside ``net``, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jalien"

# Higher layers first; a module may import its own layer and the layers below it.
LAYERS = [
    "cli",
    "roles",
    "commands",
    "services",  # catalogue, jobs, storage, cache, site, agent, datamovers, optimizers, monitor
    "sqlstore",  # SQL plumbing the services share
    "net",
    "auth",
    "wire",
    "_fast",
    "base",  # config, version, loops: importable from anywhere
]
SERVICES = {
    "catalogue",
    "jobs",
    "storage",
    "cache",
    "site",
    "agent",
    "datamovers",
    "optimizers",
    "monitor",
    "directory",
}
BASE = {"config", "version", "loops", "metrics", "logs", "__init__"}

# Third-party I/O libraries and the one layer each may be imported from.
HOMES = {
    "picows": {"net"},
    "uvloop": {"net", "roles", "cli"},
    "lmdb": {"cache"},
    "MySQLdb": {"catalogue", "sqlstore"},  # the MariaDB catalogue; sqlstore.mysql
    "ldap3": {"directory"},  # the central configuration in OpenLDAP
    "prometheus_client": {"metrics"},  # jalien/metrics.py: each process's registry
}


def layer_of(parts: tuple[str, ...]) -> str:
    head = parts[0] if parts else "__init__"
    if head == "__main__":  # ``python -m jalien`` is the command line
        return "cli"
    if head in SERVICES:
        return "services"
    if head in BASE:
        return "base"
    return head


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, rel


def imports_of(path: Path, rel: tuple[str, ...]):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1])[: len(rel) - node.level]
                yield ".".join(["jalien", *base, *(node.module or "").split(".")]), node.lineno
            elif node.module:
                yield node.module, node.lineno


def test_layers_point_down():
    problems = []
    for path, rel in modules():
        mine = layer_of(rel)
        for name, line in imports_of(path, rel):
            parts = name.split(".")
            if parts[0] == "jalien" and len(parts) > 1:
                theirs = layer_of(tuple(parts[1:]))
                if theirs == "services" and mine == "services" and parts[1] != rel[0]:
                    problems.append(f"{path}:{line}: service {rel[0]} imports service {parts[1]}")
                elif LAYERS.index(theirs) < LAYERS.index(mine):
                    problems.append(f"{path}:{line}: {mine} imports {name} (layer {theirs})")
            elif parts[0] in HOMES and not {mine, rel[0]} & HOMES[parts[0]]:  # layer or folder
                problems.append(f"{path}:{line}: {parts[0]} imported outside {HOMES[parts[0]]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_layer_folders_are_known(layer):
    known = set(LAYERS) | SERVICES
    for child in PACKAGE.iterdir():
        if child.is_dir() and not child.name.startswith((".", "__")):
            assert child.name in known, f"jalien/{child.name} is in no layer of the test"
