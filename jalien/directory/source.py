"""Where the central configuration comes from: one interface, two sources.

``ConfigSource`` is what ``service.Directory`` reads and writes; its methods block (a
directory server, a file) and are run off the event loop by the service.

* ``FileSource`` (the embedded default of ``./jalien.sh run``): people from the accounts
  file (``accounts.toml``: one login may list several DNs), the rest - CEs, partitions,
  quotas, extra roles - from ``directory.json`` beside it, written by the commands that
  change them (``setCEstatus``, ``fquota set``, ``jquota set``). SEs stay in the catalogue.
* ``ldap_source.LdapSource``: OpenLDAP (docs/ldap.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

import msgspec

from jalien.auth.accounts import AccountMap
from jalien.auth.errors import AuthError
from jalien.auth.files import write_file
from jalien.directory.model import (
    CE,
    CE_STATES,
    FILE_QUOTA_FIELDS,
    JOB_QUOTA_FIELDS,
    SE,
    DirectoryError,
    FileQuota,
    JobQuota,
    Partition,
    Person,
    Snapshot,
)


class ConfigSource(Protocol):
    @property
    def name(self) -> str:
        """What it is, for messages: ``ldap://127.0.0.1:3890/o=alice`` or a file path."""
        ...

    def load(self) -> Snapshot:
        """The whole configuration now; DirectoryError when it cannot be read."""
        ...

    def set_ce_status(self, ce: CE, status: str) -> None: ...

    def set_quota(self, person: Person, field: str, value: int) -> None:
        """Set one quota limit (JAliEn's field name: maxTotalSize, maxUnfinishedJobs...)."""
        ...

    def put_se(self, se: SE) -> bool:
        """Add or update an SE; False when this source does not keep SEs (the catalogue
        does)."""
        ...


def check_quota_field(field: str, value: int) -> None:
    if field not in FILE_QUOTA_FIELDS and field not in JOB_QUOTA_FIELDS:
        known = ", ".join([*FILE_QUOTA_FIELDS, *JOB_QUOTA_FIELDS])
        raise DirectoryError(f"unknown quota field {field!r} (one of {known})")
    if value < 0:
        raise DirectoryError(f"a quota limit is a number >= 0 (0: the default), not {value}")


def with_quota(person: Person, field: str, value: int) -> Person:
    """*person* with one quota limit changed."""
    if field in FILE_QUOTA_FIELDS:
        quota = msgspec.structs.replace(person.file_quota, **{FILE_QUOTA_FIELDS[field]: value})
        return msgspec.structs.replace(person, file_quota=quota)
    job = msgspec.structs.replace(person.job_quota, **{JOB_QUOTA_FIELDS[field]: value})
    return msgspec.structs.replace(person, job_quota=job)


class _LocalState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """directory.json: what the accounts file does not say."""

    ces: list[CE] = []
    partitions: list[Partition] = []
    roles: dict[str, list[str]] = {}  # role -> logins, besides the accounts' own roles
    file_quotas: dict[str, FileQuota] = {}
    job_quotas: dict[str, JobQuota] = {}


class FileSource:
    def __init__(self, accounts: Path, state: Path) -> None:
        self.accounts = accounts
        self.state = state

    @property
    def name(self) -> str:
        return f"{self.accounts} + {self.state}"

    def _state(self) -> _LocalState:
        try:
            data = self.state.read_bytes()
        except FileNotFoundError:
            return _LocalState()
        except OSError as exc:
            raise DirectoryError(f"cannot read {self.state}: {exc.strerror}") from None
        try:
            return msgspec.json.decode(data, type=_LocalState)
        except msgspec.DecodeError as exc:
            raise DirectoryError(f"{self.state}: {exc}") from None

    def _save(self, state: _LocalState) -> None:
        try:
            write_file(
                self.state, msgspec.json.format(msgspec.json.encode(state)), 0o644, overwrite=True
            )
        except (AuthError, OSError) as exc:
            raise DirectoryError(f"cannot write {self.state}: {exc}") from None

    def load(self) -> Snapshot:
        try:
            accounts = AccountMap.load(self.accounts) if os.path.exists(self.accounts) else None
        except AuthError as exc:
            raise DirectoryError(str(exc)) from None
        state = self._state()
        by_login: dict[str, Person] = {}
        roles: dict[str, list[str]] = {r: list(m) for r, m in state.roles.items()}
        for account in accounts or ():
            if accounts is not None and accounts.is_revoked(account.dn):
                continue
            person = by_login.get(account.login) or Person(
                login=account.login,
                home=account.home,
                file_quota=state.file_quotas.get(account.login, FileQuota()),
                job_quota=state.job_quotas.get(account.login, JobQuota()),
                entry=str(self.accounts),
            )
            by_login[account.login] = msgspec.structs.replace(
                person,
                dns=[*person.dns, account.dn],
                roles=sorted({*person.roles, *account.roles}),
            )
            for role in account.roles:
                members = roles.setdefault(role, [])
                if account.login not in members:
                    members.append(account.login)
        for role, members in state.roles.items():
            for login in members:
                found = by_login.get(login)
                if found is not None and role not in found.roles:
                    by_login[login] = msgspec.structs.replace(
                        found, roles=sorted({*found.roles, role})
                    )
        return Snapshot(
            people=sorted(by_login.values(), key=lambda p: p.login),
            roles=roles,
            ces=state.ces,
            partitions=state.partitions,
            source=self.name,
            loaded=time.time(),
        )

    def set_ce_status(self, ce: CE, status: str) -> None:
        if status not in CE_STATES:
            raise DirectoryError(f"a CE is open or closed, not {status!r}")
        state = self._state()
        others = [c for c in state.ces if c.name.upper() != ce.name.upper()]
        state.ces = [*others, msgspec.structs.replace(ce, status=status)]
        self._save(state)

    def set_quota(self, person: Person, field: str, value: int) -> None:
        check_quota_field(field, value)
        changed = with_quota(person, field, value)
        state = self._state()
        state.file_quotas[person.login] = changed.file_quota
        state.job_quotas[person.login] = changed.job_quota
        self._save(state)

    def put_se(self, se: SE) -> bool:
        return False


_implements: type[ConfigSource] = FileSource
