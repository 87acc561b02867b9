"""``ls -l``'s JAliEn records of a page of packed rows (``rowpack``), as the JSON text of
a reply's results (records separated by commas, no brackets): the pure-Python twin of
lslong_c.

The records are what ``wire.listing_views`` makes (it passes itself as *view*: its
``records`` renders the rows, its ``permissions``, ``minute`` and ``human_size`` format
their parts); this twin renders them so and has msgspec write them. ``lslong_c`` writes
the same bytes straight from the packed rows, no record ever a dict (an ``ls -l`` of 100k
entries as WebSocket JSON was mostly those dicts and their encoding).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

IMPLEMENTATION = "python"

_encode = msgspec.json.Encoder().encode


class LongView(Protocol):
    def records(self, rows: bytes, base: str, slash: bool, human: bool) -> list[dict[str, Any]]:
        """The records of packed *rows* (name, type, perm, owner, gowner, size, ctime)."""
        ...

    def permissions(self, kind: str, perm: str) -> str: ...
    def minute(self, ctime: int) -> str:
        """'MMM dd HH:mm' of a ctime in ms ("" for 0)."""
        ...

    def human_size(self, size: int) -> str: ...


def ls_long_json(rows: bytes, base: str, slash: bool, human: bool, view: LongView) -> bytes:
    """The records of *rows* under directory *base* (names with a slash for directories
    when *slash*, sizes human-readable when *human*) as JSON, comma-separated."""
    return _encode(view.records(rows, base, slash, human))[1:-1]
