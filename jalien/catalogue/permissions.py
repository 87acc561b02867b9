"""AliEn's permission model: owner, group and others, each with r/w/x octal bits, and an
admin role that may do anything."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from jalien.catalogue.model import Entry
from jalien.wire.errors import EXIT_PERMISSION, RequestError

READ, WRITE, EXECUTE = 4, 2, 1


class Caller(Protocol):
    @property
    def login(self) -> str: ...
    @property
    def roles(self) -> Iterable[str]: ...


class PermissionDenied(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_PERMISSION)


def is_admin(caller: Caller) -> bool:
    return "admin" in caller.roles


def groups_of(caller: Caller) -> set[str]:
    """A user's groups: a group named as the login (AliEn's default) and the roles."""
    return {caller.login, *caller.roles}


def allowed(caller: Caller, entry: Entry, bit: int) -> bool:
    if is_admin(caller):
        return True
    perm = entry.perm.rjust(3, "0")[-3:]
    try:
        owner, group, other = (int(ch, 8) for ch in perm)
    except ValueError:
        return False
    if entry.owner == caller.login:
        return bool(owner & bit)
    if entry.gowner in groups_of(caller):
        return bool(group & bit)
    return bool(other & bit)


def require(caller: Caller, entry: Entry, bit: int, action: str) -> None:
    if not allowed(caller, entry, bit):
        raise PermissionDenied(f"Permission denied: {caller.login} cannot {action} {entry.lfn}")


def valid_mode(mode: str) -> str:
    """'755' style octal modes only, as AliEn stores them."""
    if len(mode) not in (3, 4) or any(ch not in "01234567" for ch in mode):
        raise RequestError(f"invalid mode {mode!r}: use octal digits such as 755", 22)
    return mode[-3:]
