"""Who is on the other end of a connection, established once at the TLS handshake."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from jalien.auth.accounts import AccountMap
from jalien.auth.errors import AuthError
from jalien.auth.identity import peer_dn_from_ssl

log = logging.getLogger("jalien.net.identity")


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    dn: str
    login: str
    roles: tuple[str, ...] = ()
    home: str = ""

    def has_role(self, role: str) -> bool:
        return role in self.roles


Authenticator = Callable[[Any], Identity]
"""Maps the connection's ssl object to an Identity, or raises AuthError with the reason."""


class AccountsAuthenticator:
    """DN -> account from the accounts file; re-read when the file changes on disk, so that
    `jalien-bin setup` or an admin edit takes effect without a restart."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._accounts = AccountMap()

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._accounts, self._stamp = AccountMap(), None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._accounts = AccountMap.load(self._path)
            self._stamp = stamp
            log.info("loaded %d accounts from %s", len(self._accounts), self._path)

    def identify_dn(self, dn: str) -> Identity:
        self._refresh()
        account = self._accounts.lookup(dn)
        return Identity(dn=dn, login=account.login, roles=tuple(account.roles), home=account.home)

    def __call__(self, ssl_object: Any) -> Identity:
        if ssl_object is None:
            raise AuthError("no TLS session")
        return self.identify_dn(peer_dn_from_ssl(ssl_object))
