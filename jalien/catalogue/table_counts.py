"""Row counts of the catalogue's tables, kept current cheaply (no COUNT(*) over big tables).

Each process counts what its own committed writes changed, per table (``Deltas``: entries
inserted and deleted, GUID references and replicas added and removed); the counts live in
the index database's TABLECOUNTS and every process adds its deltas there when the
optimizers ask (``flush``), one ``INSERT ... ON DUPLICATE KEY UPDATE`` per table that
changed. A table starts at 0 when it is created; a table older than TABLECOUNTS is counted
once, exactly, the first time it is seen. A process killed before it flushed loses the
deltas of its last moments (at most one optimizer interval of its writes): the counts are
for alarms and switches, not for accounting.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import msgspec

COUNTS_DDL = """CREATE TABLE IF NOT EXISTS TABLECOUNTS (
    tbl VARCHAR(64) NOT NULL PRIMARY KEY, nrows BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"""


class TableCount(msgspec.Struct, frozen=True):
    """One catalogue table and its rows (what the optimizers look at)."""

    table: str  # L<n>L, G<n>L, G<n>L_PFN; "entries"/"replicas" for the embedded catalogue
    kind: str  # "lfn", "guid" (references), "pfn" (replicas)
    host: int  # hostIndex (0 for the embedded catalogue)
    rows: int
    prefix: str = ""  # an LFN table's prefix
    since: int = 0  # a GUID table's first GUID time (ms since the epoch)


class Deltas:
    """Rows added (+) and removed (-) per table by this process's committed writes, since
    the last flush; any thread may add."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, table: str, rows: int) -> None:
        if rows:
            with self._lock:
                self._counts[table] += rows

    def add_all(self, counts: dict[str, int]) -> None:
        with self._lock:
            for table, rows in counts.items():
                self._counts[table] += rows

    def take(self) -> dict[str, int]:
        with self._lock:
            out = {t: n for t, n in self._counts.items() if n}
            self._counts.clear()
        return out

    def give_back(self, counts: dict[str, int]) -> None:
        """A flush failed: the deltas wait for the next one."""
        self.add_all(counts)


def flush(cur: Any, deltas: dict[str, int]) -> None:
    """Add *deltas* to TABLECOUNTS (on the index database; autocommit connection)."""
    if deltas:
        cur.executemany(
            "INSERT INTO TABLECOUNTS (tbl, nrows) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE nrows = nrows + VALUES(nrows)",
            sorted(deltas.items()),
        )


def stored(cur: Any) -> dict[str, int]:
    cur.execute("SELECT tbl, nrows FROM TABLECOUNTS")
    return {str(t): int(n) for t, n in cur.fetchall()}


def start_at_zero(cur: Any, tables: list[str]) -> None:
    """A new table's count (in the transaction or lock that creates it)."""
    cur.executemany(
        "INSERT IGNORE INTO TABLECOUNTS (tbl, nrows) VALUES (%s, 0)", [(t,) for t in tables]
    )
