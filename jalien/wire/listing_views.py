"""How typed listing rows (DirEntry) read as JAliEn records: the ``ls`` family of views.

A Reply names its view as ``"<name>:<flags>"`` (e.g. ``"ls:lF"``); the JSON edge and the
shell both render through this table, so the binary channel carries compact typed rows
and the text users see is JAliEn's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jalien.wire.messages import DirEntry

_TYPE_CHAR = {"f": "-", "d": "d", "c": "c", "l": "l"}
_RWX = ["---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"]


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
    return time.strftime("%b %d %H:%M", time.localtime(ms / 1000)) if ms else ""


def long_line(entry: DirEntry, name: str, human: bool) -> str:
    size = human_size(entry.size) if human else str(entry.size)
    return (
        f"{permissions(entry.type, entry.perm)}   {entry.owner:>8} {entry.gowner:>8} "
        f"{size:>12} {short_time(entry.ctime)}    {name}"
    )


def ls_view(entry: DirEntry, flags: str, metadata: dict[str, str]) -> dict[str, Any]:
    is_dir = entry.type == "d"
    name = entry.name + "/" if is_dir and "F" in flags else entry.name
    base = metadata.get("_listing", "")
    path = base + entry.name + ("/" if is_dir else "")
    if "b" in flags:
        guid = entry.guid.upper()
        return {"guid": guid, "message": f"{guid}   {entry.name}"}
    if "c" in flags:
        return {"message": path}
    if "l" in flags or "H" in flags:
        return {
            "permissions": permissions(entry.type, entry.perm),
            "user": entry.owner,
            "group": entry.gowner,
            "size": str(entry.size),
            "ctime": str(entry.ctime) if entry.ctime else "",
            "name": name,
            "path": path,
            "message": long_line(entry, name, "H" in flags),
        }
    return {"name": name, "path": path, "message": name}


EntryView = Callable[[DirEntry, str, dict[str, str]], dict[str, Any]]
VIEWS: dict[str, EntryView] = {"ls": ls_view}


def render_entry(entry: DirEntry, view: str, metadata: dict[str, str]) -> dict[str, Any]:
    name, _, flags = view.partition(":")
    fn = VIEWS.get(name)
    if fn is None:
        return {"message": entry.name, "name": entry.name, "type": entry.type}
    return fn(entry, flags, metadata)
