"""The per-user file quota, asked at ``access write`` before any envelope is signed.

``QuotaCheck`` is the hook ``StorageService(quota=...)`` asks; ``NoQuota`` lets everything
through (a table without quotas); ``FileQuotaCheck`` is JAliEn's FQUOTAS: a user's total
size and number of files, limits from the central configuration (``jalien.directory``,
handed in as a function by the role), usage from the catalogue (the files under the
user's home, ``du``), re-read when older than *refresh* seconds and counted up by every
write granted meanwhile, so that a burst of writes cannot run past the limit between two
reads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from jalien.wire.errors import EXIT_QUOTA


class QuotaExceeded(Exception):
    """A write the user's quota does not allow; the message says which limit."""

    exitcode = EXIT_QUOTA  # EDQUOT, as the client sees it


class QuotaCheck(Protocol):
    async def check_write(self, login: str, size: int, count: int) -> None:
        """Raise QuotaExceeded when *login* may not add *count* files of *size* bytes in
        all (one ``access write``: count 1, size the booked file size)."""


class NoQuota:
    """No quota: every write is allowed."""

    async def check_write(self, login: str, size: int, count: int) -> None:
        return None


Limits = Callable[[str], tuple[int, int]]  # login -> (max total bytes, max files)
Usage = Callable[[str], Awaitable[tuple[int, int]]]  # login -> (bytes, files) now


class FileQuotaCheck:
    def __init__(
        self,
        limits: Limits,
        usage: Usage,
        *,
        refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.read_usage = usage
        self.refresh = refresh
        self.clock = clock
        self._usage: dict[str, tuple[float, int, int]] = {}  # login -> (when, bytes, files)

    async def usage(self, login: str, *, fresh: bool = False) -> tuple[int, int]:
        """(bytes, files) of *login*: read again when older than ``refresh`` or *fresh*."""
        known = self._usage.get(login)
        if fresh or known is None or self.clock() - known[0] >= self.refresh:
            size, files = await self.read_usage(login)
            known = (self.clock(), size, files)
            self._usage[login] = known
        return known[1], known[2]

    async def check_write(self, login: str, size: int, count: int) -> None:
        max_size, max_files = self.limits(login)
        used_size, used_files = await self.usage(login)
        if used_files + count > max_files:
            raise QuotaExceeded(
                f"file quota exceeded for {login}: {used_files} files of at most {max_files} "
                f"(maxNbFiles); nothing was written"
            )
        if used_size + size > max_size:
            raise QuotaExceeded(
                f"file quota exceeded for {login}: {used_size} + {size} bytes is more than "
                f"{max_size} (maxTotalSize); nothing was written"
            )
        when, known_size, known_files = self._usage[login]
        self._usage[login] = (when, known_size + size, known_files + count)  # booked


_implements: type[QuotaCheck] = FileQuotaCheck
