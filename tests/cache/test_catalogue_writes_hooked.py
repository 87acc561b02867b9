"""Every catalogue write that commits runs inside ``Catalogue._writing(paths)``: the shared
cache records it before the catalogue commits (crash consistency, jalien/cache/store.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import jalien.catalogue.service as service

WRITES = {"insert", "update", "delete", "delete_tree", "delete_replicas", "move", "add_replicas"}


def _backend_writes(tree: ast.AST) -> list[tuple[ast.Call, list[ast.AST]]]:
    """Calls of self.backend.<a write>(...) with the nodes above each."""
    found: list[tuple[ast.Call, list[ast.AST]]] = []

    def visit(node: ast.AST, above: list[ast.AST]) -> None:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in WRITES
            and ast.unparse(node.func.value) == "self.backend"
        ):
            found.append((node, above))
        for child in ast.iter_child_nodes(node):
            visit(child, [*above, node])

    visit(tree, [])
    return found


def _inside_writing(above: list[ast.AST]) -> bool:
    return any(
        isinstance(node, ast.AsyncWith)
        and any(ast.unparse(item.context_expr).startswith("self._writing(") for item in node.items)
        for node in above
    )


def test_every_catalogue_write_runs_inside_writing():
    tree = ast.parse(Path(service.__file__).read_text())
    writes = _backend_writes(tree)
    assert len(writes) >= 10  # the check sees them
    loose = [
        f"line {call.lineno}: {ast.unparse(call)}"
        for call, above in writes
        if not _inside_writing(above)
    ]
    assert not loose, f"catalogue writes not inside self._writing(...): {loose}"
