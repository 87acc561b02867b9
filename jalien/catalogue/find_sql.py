"""The WHERE clause of ``find``, once for both catalogue backends: which filters a
``FindQuery`` makes and in what order is decided here; a backend gives only its SQL
dialect (placeholder, how it matches a name glob, a regular expression, the full LFN).

Before, SQLite's and MariaDB's backends each built the clause (issue 15): the rules drifted
(an empty set of types was ``FALSE`` on one and ``type IN ()`` on the other)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jalien.catalogue.backend import FindQuery
from jalien.catalogue.paths import prefix_end

ALL_TYPES = frozenset("fdcl")


@dataclass(frozen=True)
class Dialect:
    """How a database says the parts of a find filter."""

    mark: str  # the parameter placeholder: ? or %s
    lfn: str  # the full LFN of a row, as an expression
    name_glob: Callable[[str], tuple[str, Any]]  # an entry-name glob -> (clause, argument)
    regexp: Callable[[str], str]  # an expression -> "expression matches the parameter"


def where(query: FindQuery, dialect: Dialect) -> tuple[list[str], list[Any]]:
    """The conditions (to be joined with AND) and their arguments for *query*."""
    mark = dialect.mark
    clauses = [f"dir >= {mark}", f"dir < {mark}"]
    args: list[Any] = [query.base, prefix_end(query.base)]
    if query.name_glob not in ("", "*"):
        clause, arg = dialect.name_glob(query.name_glob)
        clauses.append(clause)
        args.append(arg)
    if not query.types:
        clauses.append("FALSE")
    elif query.types != ALL_TYPES:
        clauses.append(f"type IN ({','.join([mark] * len(query.types))})")
        args.extend(sorted(query.types))
    if query.lfn_regex:
        clauses.append(dialect.regexp(dialect.lfn))
        args.append(query.lfn_regex)
    if query.lfn_like:
        clauses.append(f"{dialect.lfn} LIKE {mark}")
        args.append(query.lfn_like)
    if query.min_size >= 0:
        clauses.append(f"size >= {mark}")
        args.append(query.min_size)
    if query.jobid:
        clauses.append(f"jobid = {mark}")
        args.append(query.jobid)
    return clauses, args


# -- SQLite: GLOB is native, regexp() is a function the backend registers

SQLITE = Dialect(
    mark="?",
    lfn="dir || name",
    name_glob=lambda glob: ("name GLOB ?", glob),
    regexp=lambda expr: f"regexp(?, {expr})",
)


# -- MariaDB: a glob becomes LIKE (or REGEXP with a [class]), on the binary UTF-8 text

_BINARY_NAME = "CONVERT(name USING utf8mb4) COLLATE utf8mb4_bin"


def glob_to_like(glob: str) -> str | None:
    """SQL GLOB (SQLite's, case-sensitive) as a LIKE pattern; None if it has a class."""
    if "[" in glob:
        return None
    out = []
    for c in glob:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def glob_to_regex(glob: str) -> str:
    """SQL GLOB as an anchored PCRE pattern (for globs with [classes])."""
    out = ["(?s)^"]
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            start = i + 1
            negate = start < len(glob) and glob[start] == "^"
            if negate:
                start += 1
            end = glob.find("]", start + 1)  # a ']' first in the class is a member
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[start:end].replace("\\", "\\\\").replace("[", "\\[")
                body = body.replace("]", "\\]")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def _mariadb_glob(glob: str) -> tuple[str, Any]:
    like = glob_to_like(glob)
    if like is not None:
        return f"{_BINARY_NAME} LIKE %s", like
    return f"{_BINARY_NAME} REGEXP %s", glob_to_regex(glob)


MARIADB = Dialect(
    mark="%s",
    lfn="CONVERT(CONCAT(dir, name) USING utf8mb4) COLLATE utf8mb4_bin",
    name_glob=_mariadb_glob,
    regexp=lambda expr: f"{expr} REGEXP %s",
)
