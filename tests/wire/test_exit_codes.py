"""One table of exit codes: jalien/wire/errors.py. Every other module imports from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jalien.commands import errno
from jalien.wire import errors

PACKAGE = Path(__file__).resolve().parents[2] / "jalien"
HOME = PACKAGE / "wire" / "errors.py"
EXIT_NAME = re.compile(r"^EXIT_[A-Z0-9_]+$")
ERRNO_NAMES = {name for name in vars(errors) if re.fullmatch(r"E[A-Z]+", name)}


def _assigned(tree: ast.AST):
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    yield name.id, node.lineno


def test_no_module_but_wire_errors_defines_an_exit_code():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == HOME:
            continue
        for name, line in _assigned(ast.parse(path.read_text(), str(path))):
            if EXIT_NAME.match(name) or name in ERRNO_NAMES:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert not found, "exit codes belong in jalien/wire/errors.py:\n" + "\n".join(found)


def test_the_table_is_complete_and_consistent():
    codes = {name: value for name, value in vars(errors).items() if EXIT_NAME.match(name)}
    assert {"EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_REMOTE_IO", "EXIT_INTERRUPTED"} <= set(
        codes
    )
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in codes.values())  # a process status
    assert errors.EXIT_REMOTE_IO == errors.EREMOTEIO and errors.EXIT_PERMISSION == errors.EACCES
    assert set(errno.TEXT and vars(errno)) >= ERRNO_NAMES  # errno re-exports the same numbers
    assert set(errno.TEXT) == {getattr(errors, name) for name in ERRNO_NAMES}
