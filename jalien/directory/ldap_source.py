"""The central configuration in OpenLDAP, read and written with ldap3.

ldap3 rather than python-ldap: it is pure Python (no libldap/SASL C build in the single
binary Nuitka makes, nothing to compile on a worker node's image), kept up to date, and
synchronous calls are all we need - the service runs them in a thread.

The tree (docs/ldap.md; the schema is packaging/ldap/jalien.schema), under a base such as
``o=alice,dc=cern,dc=ch``::

    ou=People    uid=<login>      AliEnUser: subject (one per certificate DN), gecos/cn,
                                  email, alienHome, quota limits (maxTotalSize, ...)
    ou=Roles     uid=<role>       AliEnRole: users (logins)
    ou=Sites     ou=<site>, ou=Services, ou=CE, name=<ce>
                                  AliEnCE: host, maxjobs, maxqueuedjobs, TTL, ceStatus, ...
    ou=Partitions name=<name>     AliEnPartition: CEname (VO::SITE::CE)
    ou=SEs       name=<VO::SITE::SE> AliEnSE: seURL, QoS, seSize, seNumber

An entry that cannot be used (a subject that is no slash DN, a DN claimed by two people, a
CE status that is neither open nor closed, an SE without a protocol in its URL) is left
out with a line in ``Snapshot.problems`` saying which entry and why; a tree without
``ou=People`` under the base is an error (nobody could log in): the last good
configuration stays.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ldap3 import MODIFY_REPLACE, NONE, SUBTREE, Connection, Server
from ldap3.core.exceptions import (
    LDAPEntryAlreadyExistsResult,
    LDAPException,
    LDAPNoSuchObjectResult,
)
from ldap3.utils.dn import escape_rdn, parse_dn

from jalien.directory.model import (
    CE,
    CE_STATES,
    CLOSED,
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
from jalien.directory.source import ConfigSource, check_quota_field

PERSON_ATTRS = ["uid", "subject", "cn", "gecos", "email", "alienHome"]
PERSON_ATTRS += [*FILE_QUOTA_FIELDS, *JOB_QUOTA_FIELDS]
CE_ATTRS = ["name", "host", "maxjobs", "maxqueuedjobs", "TTL", "ceStatus", "ceRequirements", "type"]


def _values(attrs: Mapping[str, Any], name: str) -> list[str]:
    """An attribute's values as strings, whatever its case in the answer."""
    for key, value in attrs.items():
        if key.lower() == name.lower():
            if isinstance(value, list | tuple):
                return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
            return [value.decode() if isinstance(value, bytes) else str(value)]
    return []


def _one(attrs: Mapping[str, Any], name: str) -> str:
    values = _values(attrs, name)
    return values[0] if values else ""


class LdapSource:
    def __init__(
        self,
        uri: str,
        base: str,
        *,
        vo: str = "ALICE",
        bind_dn: str = "",
        password: str = "",
        timeout: float = 5.0,
    ) -> None:
        if not uri.startswith(("ldap://", "ldaps://")):
            raise DirectoryError(f"ldap_uri must be ldap://host:port or ldaps://..., not {uri!r}")
        if not base:
            raise DirectoryError("ldap_base is empty (e.g. o=alice,dc=cern,dc=ch)")
        self.uri = uri
        self.base = base
        self.vo = vo.upper()
        self.bind_dn = bind_dn
        self.password = password
        self.timeout = timeout

    @property
    def name(self) -> str:
        return f"{self.uri}/{self.base}"

    def _connect(self) -> Connection:
        server = Server(self.uri, connect_timeout=self.timeout, get_info=NONE)
        try:
            return Connection(
                server,
                user=self.bind_dn or None,
                password=self.password or None,
                auto_bind=True,
                receive_timeout=max(1, round(self.timeout)),  # ldap3 packs it as an int
                raise_exceptions=True,
            )
        except LDAPException as exc:
            raise DirectoryError(f"LDAP {self.uri}: {_why(exc)}") from None

    def _search(
        self, conn: Connection, branch: str, kind: str, attrs: list[str], required: bool = False
    ) -> list[tuple[str, Mapping[str, Any]]]:
        base = f"{branch},{self.base}"
        try:
            conn.search(base, f"(objectClass={kind})", SUBTREE, attributes=attrs)
        except LDAPNoSuchObjectResult:
            if required:
                raise DirectoryError(
                    f"LDAP {self.uri}: there is no {base} (is ldap_base right?)"
                ) from None
            return []
        except LDAPException as exc:
            raise DirectoryError(f"LDAP {self.uri}: searching {base}: {_why(exc)}") from None
        return [
            (str(item["dn"]), item.get("attributes", {}))
            for item in conn.response or ()
            if item.get("type") == "searchResEntry"
        ]

    def load(self) -> Snapshot:
        conn = self._connect()
        try:
            people = self._search(conn, "ou=People", "AliEnUser", PERSON_ATTRS, required=True)
            roles = self._search(conn, "ou=Roles", "AliEnRole", ["uid", "users"])
            ces = self._search(conn, "ou=Sites", "AliEnCE", CE_ATTRS)
            partitions = self._search(conn, "ou=Partitions", "AliEnPartition", ["name", "CEname"])
            ses = self._search(
                conn, "ou=SEs", "AliEnSE", ["name", "seURL", "QoS", "seSize", "seNumber"]
            )
        finally:
            conn.unbind()
        problems: list[str] = []
        role_map = self._roles(roles, problems)
        snapshot = Snapshot(
            people=self._people(people, role_map, problems),
            roles=role_map,
            ces=self._ces(ces, problems),
            partitions=[
                Partition(name=_one(a, "name"), ces=_values(a, "CEname")) for _, a in partitions
            ],
            ses=self._ses(ses, problems),
            source=self.name,
            loaded=time.time(),
            problems=problems,
        )
        known = {p.login for p in snapshot.people}
        for role, members in role_map.items():
            for login in members:
                if login not in known:
                    problems.append(f"uid={role},ou=Roles: member {login!r} has no ou=People entry")
        return snapshot

    @staticmethod
    def _roles(
        entries: list[tuple[str, Mapping[str, Any]]], problems: list[str]
    ) -> dict[str, list[str]]:
        roles: dict[str, list[str]] = {}
        for dn, attrs in entries:
            name = _one(attrs, "uid")
            if not name:
                problems.append(f"{dn}: a role without uid, left out")
                continue
            roles[name] = sorted(set(_values(attrs, "users")))
        return roles

    def _people(
        self,
        entries: list[tuple[str, Mapping[str, Any]]],
        roles: dict[str, list[str]],
        problems: list[str],
    ) -> list[Person]:
        people: list[Person] = []
        owner: dict[str, str] = {}
        for dn, attrs in sorted(entries, key=lambda e: e[0]):
            login = _one(attrs, "uid")
            if not login or login == "admin":
                problems.append(
                    f"{dn}: {'no uid' if not login else 'uid admin is reserved'}, left out"
                )
                continue
            dns: list[str] = []
            for subject in _values(attrs, "subject"):
                subject = subject.strip()
                if not subject.startswith("/"):
                    problems.append(
                        f"{dn}: subject {subject!r} is not a slash DN (/C=../CN=..), left out"
                    )
                elif subject in owner:
                    problems.append(
                        f"{dn}: subject {subject} is already uid={owner[subject]}'s, left out"
                    )
                else:
                    owner[subject] = login
                    dns.append(subject)
            if not dns:
                problems.append(f"{dn}: no usable subject: uid={login} cannot log in")
            try:
                file_quota = FileQuota(
                    **{f: int(_one(attrs, k) or 0) for k, f in FILE_QUOTA_FIELDS.items()}
                )
                job_quota = JobQuota(
                    **{f: int(_one(attrs, k) or 0) for k, f in JOB_QUOTA_FIELDS.items()}
                )
            except ValueError:
                problems.append(f"{dn}: a quota limit is not a number, defaults used")
                file_quota, job_quota = FileQuota(), JobQuota()
            people.append(
                Person(
                    login=login,
                    dns=dns,
                    roles=sorted(r for r, members in roles.items() if login in members),
                    full_name=_one(attrs, "gecos") or _one(attrs, "cn"),
                    email=_values(attrs, "email"),
                    home=_one(attrs, "alienHome"),
                    file_quota=file_quota,
                    job_quota=job_quota,
                    entry=dn,
                )
            )
        return people

    def _ces(self, entries: list[tuple[str, Mapping[str, Any]]], problems: list[str]) -> list[CE]:
        ces: list[CE] = []
        for dn, attrs in entries:
            rdns = parse_dn(dn)
            # name=<ce>,ou=CE,ou=Services,ou=<site>,ou=Sites,<base>
            if len(rdns) < 5 or [r[0].lower() for r in rdns[1:5]] != ["ou"] * 4:
                problems.append(
                    f"{dn}: a CE outside ou=CE,ou=Services,ou=<site>,ou=Sites, left out"
                )
                continue
            site, name = rdns[3][1], _one(attrs, "name")
            if not name or "::" in name:
                problems.append(f"{dn}: a CE's name is its last part (no '::'), left out")
                continue
            status = (_one(attrs, "ceStatus") or "open").lower()
            if status not in CE_STATES:
                problems.append(f"{dn}: ceStatus {status!r} is neither open nor closed: closed")
                status = CLOSED
            try:
                numbers = {k: int(_one(attrs, k) or 0) for k in ("maxjobs", "maxqueuedjobs", "TTL")}
            except ValueError:
                problems.append(f"{dn}: maxjobs, maxqueuedjobs and TTL are numbers, left out")
                continue
            ces.append(
                CE(
                    name=f"{self.vo}::{site}::{name}",
                    site=site,
                    host=_one(attrs, "host"),
                    status=status,
                    max_running=numbers["maxjobs"],
                    max_queued=numbers["maxqueuedjobs"],
                    ttl=numbers["TTL"],
                    requirements=_one(attrs, "ceRequirements"),
                    batch=_one(attrs, "type"),
                    entry=dn,
                )
            )
        return sorted(ces, key=lambda c: c.name)

    @staticmethod
    def _ses(entries: list[tuple[str, Mapping[str, Any]]], problems: list[str]) -> list[SE]:
        ses: list[SE] = []
        for dn, attrs in entries:
            name, url = _one(attrs, "name"), _one(attrs, "seURL")
            if name.count("::") != 2 or "://" not in url:
                problems.append(
                    f"{dn}: an SE needs a name VO::SITE::NAME and a URL with its protocol, left out"
                )
                continue
            try:
                capacity, number = (
                    int(_one(attrs, "seSize") or 0),
                    int(_one(attrs, "seNumber") or 0),
                )
            except ValueError:
                problems.append(f"{dn}: seSize and seNumber are numbers, left out")
                continue
            ses.append(
                SE(
                    name=name,
                    url=url.rstrip("/"),
                    site=name.split("::")[1],
                    qos=[q.lower() for q in _values(attrs, "QoS")] or ["disk"],
                    capacity=capacity,
                    number=number,
                )
            )
        return ses

    # -- writes
    def _modify(self, dn: str, changes: dict[str, list[tuple[Any, list[str]]]]) -> None:
        conn = self._connect()
        try:
            conn.modify(dn, changes)
        except LDAPException as exc:
            raise DirectoryError(f"LDAP {self.uri}: changing {dn}: {_why(exc)}") from None
        finally:
            conn.unbind()

    def set_ce_status(self, ce: CE, status: str) -> None:
        if status not in CE_STATES:
            raise DirectoryError(f"a CE is open or closed, not {status!r}")
        if not ce.entry:
            raise DirectoryError(f"CE {ce.name} has no LDAP entry to change")
        self._modify(ce.entry, {"ceStatus": [(MODIFY_REPLACE, [status])]})

    def set_quota(self, person: Person, field: str, value: int) -> None:
        check_quota_field(field, value)
        if not person.entry:
            raise DirectoryError(f"user {person.login} has no LDAP entry to change")
        self._modify(person.entry, {field: [(MODIFY_REPLACE, [str(value)] if value else [])]})

    def put_se(self, se: SE) -> bool:
        branch = f"ou=SEs,{self.base}"
        dn = f"name={escape_rdn(se.name)},{branch}"
        attrs: dict[str, Any] = {"name": se.name, "seURL": se.url, "QoS": se.qos or ["disk"]}
        if se.capacity:
            attrs["seSize"] = str(se.capacity)
        if se.number:
            attrs["seNumber"] = str(se.number)
        conn = self._connect()
        try:
            with contextlib.suppress(LDAPEntryAlreadyExistsResult):
                conn.add(branch, ["organizationalUnit"], {"ou": "SEs"})
            try:
                conn.add(dn, ["AliEnSE"], attrs)
            except LDAPEntryAlreadyExistsResult:
                conn.modify(
                    dn,
                    {
                        k: [(MODIFY_REPLACE, v if isinstance(v, list) else [v])]
                        for k, v in attrs.items()
                    },
                )
        except LDAPException as exc:
            raise DirectoryError(f"LDAP {self.uri}: writing {dn}: {_why(exc)}") from None
        finally:
            conn.unbind()
        return True


def _why(exc: LDAPException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


_implements: type[ConfigSource] = LdapSource
