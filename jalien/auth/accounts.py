"""Who a certificate DN is on this grid: login, roles and home directory.

The map lives in a small TOML file an administrator can read and edit::

    [[account]]
    login = "jdoe"
    dn = "/C=ch/O=jalien/OU=Users/CN=jdoe"
    roles = ["users"]
    home = "/alice/cern.ch/user/j/jdoe/"

    [revoked]
    dns = ["/C=ch/O=jalien/OU=Users/CN=mallory"]

DNs are compared exactly as slash strings (see ``names.dn_string``). One login may own
several DNs (a renewed certificate from another CA); one DN maps to one login. A revoked DN
is refused even if an account still lists it.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator

import msgspec

from .errors import AuthError
from .files import StrPath, read_file, write_file

# Logins no account may have. "admin" owns the catalogue's top directories, as in AliEn
# (jalien.catalogue.service.ROOT_OWNER): an account of that name would own them and could write
# anywhere without the admin role.
RESERVED_LOGINS = frozenset({"admin"})


class Account(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One DN's grid account."""

    login: str
    dn: str
    roles: list[str] = []
    home: str = ""


class _AccountFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    account: list[Account] = []
    revoked: dict[str, list[str]] = {}


class AccountMap:
    """DN → Account, plus the set of revoked DNs."""

    def __init__(self, accounts: list[Account] | None = None, revoked: list[str] | None = None):
        self._by_dn: dict[str, Account] = {}
        self._revoked: set[str] = set(revoked or ())
        for account in accounts or ():
            if account.dn in self._by_dn:
                raise AuthError(f"DN {account.dn} is listed twice in the account map")
            self.add(account)

    @classmethod
    def load(cls, path: StrPath) -> AccountMap:
        """Read an account file (see the module docstring for its format)."""
        data = read_file(path, "account file")
        try:
            raw = tomllib.loads(data.decode("utf-8"))
            parsed = msgspec.convert(raw, _AccountFile)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AuthError(f"account file {path} is not valid TOML: {exc}") from None
        except msgspec.ValidationError as exc:
            raise AuthError(f"account file {path}: {exc}") from None
        unknown = set(parsed.revoked) - {"dns"}
        if unknown:
            raise AuthError(f"account file {path}: unknown [revoked] keys {sorted(unknown)}")
        try:
            return cls(parsed.account, parsed.revoked.get("dns", []))
        except AuthError as exc:
            raise AuthError(f"account file {path}: {exc}") from None

    def lookup(self, dn: str) -> Account:
        """The account of *dn*; AuthError when it is revoked or unknown."""
        if dn in self._revoked:
            raise AuthError(f"revoked certificate {dn}")
        try:
            return self._by_dn[dn]
        except KeyError:
            raise AuthError(f"unknown user {dn}") from None

    def get(self, dn: str) -> Account | None:
        """The account listed for *dn*, revoked or not (for tools, not for authentication)."""
        return self._by_dn.get(dn)

    def add(self, account: Account) -> None:
        """Add or replace the account of ``account.dn``."""
        if not account.login or not account.dn.startswith("/"):
            raise AuthError(f"an account needs a login and a slash DN, got {account!r}")
        if account.login in RESERVED_LOGINS:
            raise AuthError(f"login {account.login!r} is reserved (the catalogue's own owner)")
        self._by_dn[account.dn] = account

    def remove(self, dn: str) -> None:
        """Forget *dn* (no error if it was not there)."""
        self._by_dn.pop(dn, None)

    def revoke(self, dn: str) -> None:
        """Refuse *dn* from now on, whatever account lists it."""
        self._revoked.add(dn)

    def is_revoked(self, dn: str) -> bool:
        return dn in self._revoked

    def by_login(self, login: str) -> list[Account]:
        """Every DN-account entry of *login*."""
        return [a for a in self._by_dn.values() if a.login == login]

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_dn.values())

    def __len__(self) -> int:
        return len(self._by_dn)

    def to_toml(self) -> str:
        """The file text: one [[account]] table per DN, then [revoked]."""
        lines = ["# jalien accounts: certificate DN -> grid account", ""]
        for account in sorted(self._by_dn.values(), key=lambda a: (a.login, a.dn)):
            lines += [
                "[[account]]",
                f"login = {_toml_str(account.login)}",
                f"dn = {_toml_str(account.dn)}",
                f"roles = [{', '.join(_toml_str(r) for r in account.roles)}]",
                f"home = {_toml_str(account.home)}",
                "",
            ]
        if self._revoked:
            lines += ["[revoked]", "dns = ["]
            lines += [f"    {_toml_str(dn)}," for dn in sorted(self._revoked)]
            lines += ["]", ""]
        return "\n".join(lines)

    def save(self, path: StrPath) -> None:
        """Write the map atomically (temporary file, then rename over *path*)."""
        write_file(path, self.to_toml().encode("utf-8"), 0o644, overwrite=True)


def _toml_str(value: str) -> str:
    """A TOML basic string; JSON's escapes are valid TOML, except DEL must be escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
