# the same interface as rowpack_py (jalien/_fast/__init__.py shows the checker that twin)
import sqlite3
from typing import Any

IMPLEMENTATION: str

def pack_rows(
    conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], hide_dot: bool, skip_type: str
) -> tuple[bytes, int, int, Any]: ...
