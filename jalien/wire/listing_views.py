"""How typed listing rows (DirEntry) read as JAliEn records: the ``ls`` family of views.

A Reply names its view as ``"<name>:<flags>"`` (e.g. ``"ls:lF"``); the JSON edge and the
shell both render through this table, so the binary channel carries compact typed rows
and the text users see is JAliEn's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from jalien._fast import lslong
from jalien.wire.messages import DirEntry, decode_entries

_TYPE_CHAR = {"f": "-", "d": "d", "c": "c", "l": "l"}
_RWX = ["---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"]


@functools.lru_cache(maxsize=256)  # a listing has a handful of (type, perm) pairs
def permissions(kind: str, perm: str) -> str:
    """'d' + '755' -> 'drwxr-xr-x' (JAliEn's getFormatedTypeAndPerm)."""
    digits = perm.rjust(3, "0")[-3:]
    try:
        bits = "".join(_RWX[int(ch, 8)] for ch in digits)
    except (ValueError, IndexError):
        bits = "?????????"
    return _TYPE_CHAR.get(kind, "-") + bits


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1024 or unit == "PB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return str(size)


def short_time(ms: int) -> str:
    """'MMM dd HH:mm' in the server's local time, as JAliEn prints ls -l."""
    return _minute(ms // 60_000) if ms else ""


@functools.lru_cache(maxsize=4096)  # files of one directory tend to share minutes
def _minute(minute: int) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(minute * 60))


def long_line(entry: DirEntry, name: str, human: bool) -> str:
    size = human_size(entry.size) if human else str(entry.size)
    return _long_text(permissions(entry.type, entry.perm), entry, size, name)


def _long_text(perms: str, entry: DirEntry, size: str, name: str) -> str:
    return (
        f"{perms}   {entry.owner:>8} {entry.gowner:>8} {size:>12} "
        f"{_minute(entry.ctime // 60_000) if entry.ctime else ''}    {name}"
    )


def _ls_brief(entry: DirEntry, base: str, slash: bool) -> dict[str, Any]:
    is_dir = entry.type == "d"
    name = entry.name + "/" if is_dir and slash else entry.name
    return {"name": name, "path": base + entry.name + ("/" if is_dir else ""), "message": name}


def _ls_long(entries: list[DirEntry], base: str, slash: bool, human: bool) -> list[dict[str, Any]]:
    """``ls -l`` records of a page. What the entries of a directory share, their type,
    permissions and owners, is formatted once per page (a quarter less time per record)."""
    heads: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    for e in entries:
        kind, owner, gowner = e.type, e.owner, e.gowner
        is_dir = kind == "d"
        name = e.name + "/" if is_dir and slash else e.name
        key = (kind, e.perm, owner, gowner)
        head = heads.get(key)
        if head is None:
            perms = permissions(kind, e.perm)
            head = heads[key] = (perms, f"{perms}   {owner:>8} {gowner:>8} ")
        size = str(e.size)
        ctime = e.ctime
        shown = human_size(e.size) if human else size
        append(
            {
                "permissions": head[0],
                "user": owner,
                "group": gowner,
                "size": size,
                "ctime": str(ctime) if ctime else "",
                "name": name,
                "path": base + e.name + ("/" if is_dir else ""),
                "message": f"{head[1]}{shown:>12} "
                f"{_minute(ctime // 60_000) if ctime else ''}    {name}",
            }
        )
    return out


_UP_TO_TYPE, _UP_TO_CTIME, _UP_TO_GUID = (
    DirEntry.__struct_fields__.index(name) + 1 for name in ("type", "ctime", "guid")
)


def ls_fields(flags: str) -> int:
    """How many leading fields of DirEntry ``ls_page`` reads for *flags*: all a listing
    reads from the catalogue (catalogue.backend.listing_fields)."""
    if "b" in flags:  # (in ls_page's order of precedence)
        return _UP_TO_GUID
    if "c" not in flags and ("l" in flags or "H" in flags):
        return _UP_TO_CTIME
    return _UP_TO_TYPE  # names; a directory's slash


def ls_page(entries: list[DirEntry], flags: str, metadata: dict[str, str]) -> list[dict[str, Any]]:
    """JAliEn's ls records for a page of rows; the flags are read once per page."""
    base = metadata.get("_listing", "")
    slash = "F" in flags
    if "b" in flags:
        return [
            {"guid": (guid := e.guid.upper()), "message": f"{guid}   {e.name}"} for e in entries
        ]
    if "c" in flags:
        return [{"message": base + e.name + ("/" if e.type == "d" else "")} for e in entries]
    if "l" in flags or "H" in flags:
        return _ls_long(entries, base, slash, "H" in flags)
    return [_ls_brief(e, base, slash) for e in entries]


class _LongView:
    """What ``_fast.lslong`` writes ``ls -l``'s records with: this module's formats, and
    its records of the same rows (the pure twin renders those; the Cython one is held to
    them byte for byte by tests/wire/test_listing_views.py)."""

    permissions = staticmethod(permissions)
    minute = staticmethod(short_time)
    human_size = staticmethod(human_size)

    @staticmethod
    def records(rows: bytes, base: str, slash: bool, human: bool) -> list[dict[str, Any]]:
        return _ls_long(decode_entries(rows), base, slash, human)


_LONG_VIEW = _LongView()


def packed_json(rows: bytes, view: str, metadata: dict[str, str]) -> bytes | None:
    """The JSON records (comma-separated) of a page of packed rows in *view*, written
    straight from them (``_fast.lslong``), for the views that have such a writer
    (``ls -l``, ``ls -lH``, with or without F); None for the others (their records are
    made from the decoded rows)."""
    name, _, flags = view.partition(":")
    if name != "ls" or "b" in flags or "c" in flags or ("l" not in flags and "H" not in flags):
        return None
    base = metadata.get("_listing", "")
    return lslong.ls_long_json(rows, base, "F" in flags, "H" in flags, _LONG_VIEW)


def _plain(entries: list[DirEntry], flags: str, metadata: dict[str, str]) -> list[dict[str, Any]]:
    return [{"message": e.name, "name": e.name, "type": e.type} for e in entries]


PageView = Callable[[list[DirEntry], str, dict[str, str]], list[dict[str, Any]]]
VIEWS: dict[str, PageView] = {"ls": ls_page}


def render_entries(
    entries: list[DirEntry], view: str, metadata: dict[str, str]
) -> list[dict[str, Any]]:
    """The records of a page of typed rows in *view* ("<name>:<flags>"); string values."""
    name, _, flags = view.partition(":")
    return VIEWS.get(name, _plain)(entries, flags, metadata)
