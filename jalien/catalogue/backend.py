"""The interface every catalogue backend implements (SQLite, sharded MariaDB).

All methods are coroutines or async iterators: a backend runs its blocking work on its
own threads, never on the event loop. Paths handed to a backend are already resolved and
checked by the service; a backend only stores and finds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec

from jalien.catalogue.model import Entry, Replica, StorageElement
from jalien.catalogue.table_counts import TableCount
from jalien.loops import Pool
from jalien.wire.errors import EXIT_EXISTS, EXIT_INVALID, EXIT_NOT_FOUND, RequestError
from jalien.wire.messages import DirEntry

PAGE = 5000
FIRST_PAGE = 512
"""Rows of the first page of a listing or a find; each page after it is twice as big, up
to the full page: a streamed answer holds each page back until the next one is read (to
flag the last one final), so the client has its first rows after ~3 x 512 rows of reading
instead of ~2 x 5000 (bench_requests, ``ls -l`` of 100k entries: the first page), and the
pages of a long answer soon become full (throughput)."""


def page_rows(page: int, index: int) -> int:
    """Rows page number *index* (0: the first) of a listing or a find asks for."""
    return min(page, FIRST_PAGE << index) if index < 8 else page


ALL_FIELDS = len(DirEntry.__struct_fields__)
NAME_AND_TYPE = 2  # a listing's first two fields: what a name's search needs


def listing_fields(fields: int) -> tuple[str, ...]:
    """The first *fields* fields of DirEntry, the columns a listing reads (the others keep
    their defaults). The columns read are most of a big listing's cost (Python's sqlite3
    makes an object per value: 100k entries, 242 ms for all ten, 126 without md5, guid and
    jobid, 52 for names and types alone); each view says what it needs
    (``wire.listing_views.ls_fields``)."""
    if not 1 <= fields <= ALL_FIELDS:
        raise ValueError(f"a listing reads 1 to {ALL_FIELDS} fields, not {fields}")
    return DirEntry.__struct_fields__[:fields]


class PackedEntries(msgspec.Struct, frozen=True, gc=False):
    """A page of a listing encoded already: one MessagePack array of DirEntry arrays, as
    the binary channel carries ``list[DirEntry]`` (``list_dir_packed``; a Reply's entries
    as they are), *count* of them."""

    rows: msgspec.Raw
    count: int


def is_shown(name: str, kind: str, hide_dot: bool, skip_type: str) -> bool:
    """Whether a listing shows an entry: not when its name starts with "." and *hide_dot*
    (``ls`` without -a), not when its type is *skip_type* (-b: "d"; "" for none).
    ``_fast.rowpack`` applies the same rule to SQLite's rows."""
    return not (hide_dot and name.startswith(".")) and not (skip_type and kind == skip_type)


_encode = msgspec.msgpack.Encoder().encode


def pack_shown(rows: list[tuple[Any, ...]], hide_dot: bool, skip_type: str) -> PackedEntries | None:
    """A page of listing rows (DirEntry's leading fields, as a driver returns them) packed
    as ``rowpack`` packs SQLite's: those ``is_shown`` only; None when none is."""
    if hide_dot or skip_type:
        rows = [r for r in rows if is_shown(r[0], r[1] if len(r) > 1 else "", hide_dot, skip_type)]
    return PackedEntries(msgspec.Raw(_encode(rows)), len(rows)) if rows else None


class Exists(RequestError):
    def __init__(self, lfn: str) -> None:
        super().__init__(f"{lfn}: file exists", EXIT_EXISTS)


class NotFound(RequestError):
    def __init__(self, lfn: str) -> None:
        super().__init__(f"{lfn}: No such file or directory", EXIT_NOT_FOUND)


class NotSharded(RequestError):
    """An operation on tables that this backend does not have (the embedded catalogue)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: only the sharded MariaDB catalogue does this", EXIT_INVALID)


class FindQuery(msgspec.Struct, kw_only=True, frozen=True):
    base: str  # directory, with trailing '/'
    name_glob: str = "*"  # matched against the entry name (SQL GLOB semantics)
    lfn_regex: str = ""  # matched against the full LFN when set
    lfn_like: str = ""  # SQL LIKE (case-sensitive) on the full LFN, JAliEn's find pattern
    types: frozenset[str] = frozenset({"f"})
    limit: int = 0  # 0: no limit
    min_size: int = -1
    jobid: int = 0


class DiskUsage(msgspec.Struct, kw_only=True):
    files: int = 0
    directories: int = 0
    size: int = 0


class CatalogueBackend(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def pools(self) -> list[Pool]:
        """Its thread pools, for the role's registry (jalien.loops)."""
        ...

    async def table_counts(self) -> list[TableCount]:
        """Its tables and their rows, kept current cheaply (the optimizers)."""
        ...

    async def rotate_guid_table(self) -> str:
        """A new GUID table for GUIDs from shortly after now on (NotSharded: none)."""
        ...

    async def move_directory(self, directory: str, host: int | None = None) -> str:
        """Split the populated *directory* into an LFN table of its own on config host
        *host* (default: its table's), online; what was done, in words (NotSharded: one
        table)."""
        ...

    async def get(self, path: str) -> Entry | None: ...
    async def get_many(self, paths: list[str]) -> dict[str, Entry]: ...
    def list_dir(
        self, directory: str, page: int = PAGE, fields: int = ALL_FIELDS
    ) -> AsyncIterator[list[DirEntry]]:
        """Pages of a directory's entries, in name order, in the wire's row shape: the first
        *fields* fields read (``listing_fields``), the others at their defaults."""
        ...

    def list_dir_packed(
        self,
        directory: str,
        page: int = PAGE,
        fields: int = ALL_FIELDS,
        hide_dot: bool = False,
        skip_type: str = "",
    ) -> AsyncIterator[PackedEntries]:
        """``list_dir``'s pages of the entries ``is_shown`` (with *hide_dot*, *skip_type*),
        encoded for the binary channel (no page of none); the SQLite backend never makes
        its rows Python objects (``_fast.rowpack``)."""
        ...

    async def has_children(self, directory: str) -> bool: ...
    def find(self, query: FindQuery, page: int = PAGE) -> AsyncIterator[list[Entry]]: ...
    async def du(self, directory: str) -> DiskUsage: ...
    async def by_guid(self, guid: str) -> list[Entry]: ...

    async def insert(self, entries: list[Entry]) -> None:
        """All or nothing: Exists if one of them is already there."""
        ...

    async def update(self, path: str, fields: dict[str, object]) -> None: ...
    async def delete(self, paths: list[str]) -> int: ...
    async def delete_tree(self, directory: str) -> int:
        """Remove a directory and everything under it; returns the number of entries."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Rename an entry; a directory takes its whole subtree along."""
        ...

    async def add_replicas(self, replicas: list[Replica]) -> None: ...
    async def replicas(self, guid: str) -> list[Replica]: ...
    async def delete_replicas(self, guid: str, se: str | None = None) -> int: ...
    def replicas_on(self, se: str, page: int = PAGE) -> AsyncIterator[list[Replica]]:
        """Pages of every replica on SE *se* (its name as registered), in no promised
        order; one pass over the replica table, never the whole of it in memory (the
        dark-data crawl's catalogue dumps, an SE's decommissioning)."""
        ...

    async def list_ses(self) -> list[StorageElement]: ...
    async def put_se(self, se: StorageElement) -> None: ...
