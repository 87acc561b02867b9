"""The per-user file quota, asked at ``access write`` before any envelope is signed.

Only the hook lives here: ``NoQuota`` lets everything through. A later issue implements
``QuotaCheck`` (JAliEn's FQUOTAS: files and bytes per user) and hands it to
``StorageCommands(quota=...)``.
"""

from __future__ import annotations

from typing import Protocol


class QuotaExceeded(Exception):
    """A write the user's quota does not allow; the message says which limit."""

    exitcode = 122  # EDQUOT, as the client sees it


class QuotaCheck(Protocol):
    async def check_write(self, login: str, size: int, count: int) -> None:
        """Raise QuotaExceeded when *login* may not add *count* files of *size* bytes in
        all (one ``access write``: count 1, size the booked file size)."""


class NoQuota:
    """No quota: every write is allowed."""

    async def check_write(self, login: str, size: int, count: int) -> None:
        return None
