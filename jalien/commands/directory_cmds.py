"""The grid's central configuration as JAliEn's commands show and change it (docs/ldap.md):
whois, user, groups, groupmembers, listCEs, listpartitions, setCEstatus, resyncLDAP, and
the quotas fquota and jquota (what alien.py's client-side ``quota`` puts together)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec

from jalien.auth import policy
from jalien.auth.policy import Action as A
from jalien.auth.policy import ByFirstWord, IdentityKind, kind_of
from jalien.commands.errno import EINVAL, ENOENT, EPERM, jalien_error
from jalien.commands.options import parse
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.directory.model import (
    CE_STATES,
    CLOSED,
    FILE_QUOTA_FIELDS,
    JOB_QUOTA_FIELDS,
    DirectoryError,
    Person,
)
from jalien.directory.service import Directory
from jalien.jobs.admission import JobUsage
from jalien.wire.errors import EXIT_NO_CONNECTION, RequestError
from jalien.wire.messages import Record

FileUsage = Callable[[str], Awaitable[tuple[int, int]]]  # login -> (bytes, files), fresh
JobUsageOf = Callable[[str], Awaitable[JobUsage]]
QUOTA_ACTION = ByFirstWord(A.CONFIG_READ, set=A.ADMIN)
FQUOTA_USAGE = (
    "fquota: Displays information about File Quotas.\n"
    "usage: fquota list [<user>]\n"
    "       fquota set <user> <field> <value>  (admins; maxNbFiles, maxTotalSize(Byte))"
)
JQUOTA_USAGE = (
    "jquota: Displays information about Job Quotas.\n"
    "usage: jquota list [<user>]\n"
    "       jquota set <user> <field> <value>  (admins; maxUnfinishedJobs, maxWaitingJobs,\n"
    "       maxParallelJobs, maxTotalCpuCost, maxTotalRunningTime)"
)


def _failed(exc: DirectoryError) -> RequestError:
    return jalien_error(EINVAL, str(exc))


class DirectoryCommands:
    def __init__(
        self,
        table: CommandTable,
        directory: Directory,
        *,
        home_of: Callable[[str], str],
        file_usage: FileUsage | None = None,
        job_usage: JobUsageOf | None = None,
    ) -> None:
        self.table = table
        self.dir = directory
        self.home_of = home_of
        self.file_usage = file_usage
        self.job_usage = job_usage

    def register(self) -> None:
        add = self.table.add
        read = A.CONFIG_READ
        add(
            "whois",
            self.whois,
            "who an account is: whois [-s] [-f] <account name>...",
            action=read,
            args=Args(flags=("s", "f"), min=1, usage="usage: whois [-s] [-f] <account name>..."),
        )
        add(
            "user",
            self.user,
            "act as another account or one of your roles: user <user name>",
            action=A.BECOME,
            args=Args(min=1, max=1, words=True, usage="usage: user <user name>"),
        )
        add("groups", self.groups, "the groups (roles) of a user: groups [<user>]", action=read)
        add(
            "groupmembers",
            self.groupmembers,
            "the members of a group: groupmembers <group>",
            action=read,
            args=Args(
                min=1, max=1, words=True, usage="groupmembers <group> : displays group members"
            ),
        )
        add("listCEs", self.list_ces, "the computing elements: listCEs [-s] [CE...]", action=read)
        add(
            "listpartitions",
            self.list_partitions,
            "the CE partitions: listpartitions [name...]",
            action=read,
        )
        add(
            "setCEstatus",
            self.set_ce_status,
            "open or close CEs to new jobs: setCEstatus open|closed <CE>...",
            action=A.ADMIN,
            args=Args(min=2, words=True, usage="usage: setCEstatus open|closed <CE>..."),
        )
        add(
            "resyncLDAP",
            self.resync,
            "read the central configuration again (LDAP) and say how it went",
            action=A.ADMIN,
        )
        add(
            "fquota",
            self.fquota,
            "file quotas: fquota list [<user>] | set ...",
            action=QUOTA_ACTION,
        )
        add(
            "jquota", self.jquota, "job quotas: jquota list [<user>] | set ...", action=QUOTA_ACTION
        )

    # -- people
    def whois(self, session: Session, opts) -> list[Record]:
        search, full = "s" in opts, "f" in opts
        logins: set[str] = set()
        missing: list[str] = []
        for word in opts.args:
            if search or full:
                needle = word.lower()
                logins.update(
                    p.login
                    for p in self.dir.people()
                    if needle in p.login.lower() or (full and needle in p.full_name.lower())
                )
            elif self.dir.person(word) is not None:
                logins.add(word)
            else:
                missing.append(word)
        records = [self._whois_record(self.dir.person(login)) for login in sorted(logins)]
        records = [r for r in records if r]
        records += [{"username": m, "message": f"Username not found: {m}"} for m in missing]
        if not records:
            raise jalien_error(ENOENT, f"No account matches {' '.join(opts.args)}")
        return records

    def _whois_record(self, person: Person | None) -> Record:
        if person is None:
            return {}
        lines = [f"Username: {person.login}"]
        record: Record = {"username": person.login}
        for key, values, newlines in (
            ("Full name", [person.full_name] if person.full_name else [], False),
            ("Roles", person.roles, False),
            ("Email", person.email, True),
            ("Subject", person.dns, True),
        ):
            if not values:
                continue
            joined = ("\n    " if newlines and len(values) > 1 else ", ").join(values)
            lines.append(
                f"  {key}: {joined}"
                if not (newlines and len(values) > 1)
                else f"  {key}: \n    {joined}"
            )
            record[key.lower().replace(" ", "_")] = ", ".join(values)
        record["message"] = "\n".join(lines) + "\n"
        return record

    def user(self, session: Session, opts) -> list[Record]:
        target = opts.args[0]
        me = session.identity
        mine = self.dir.person(me.login)
        may_switch = policy.is_admin(me) or (mine is not None and target in mine.roles)
        if target != me.login and not may_switch:
            raise jalien_error(EPERM, f"Switching user {me.login} to [{target}] failed")
        person = self.dir.person(target)
        if person is None:
            raise jalien_error(ENOENT, f"User {target} cannot be found. Abort")
        home = person.home or self.home_of(target)
        roles = tuple(person.roles)
        kind = kind_of(roles=roles, token=me.token, proxy=me.kind is IdentityKind.PROXY)
        session.identity = msgspec.structs.replace(
            me, login=target, roles=roles, home=home, kind=kind
        )
        session.cwd, session.prepared = home, False
        return [{"user": target, "homedir": home, "message": f"Switched to {target}"}]

    def groups(self, session: Session, args: list[str]) -> list[Record]:
        login = args[0] if args else session.identity.login
        person = self.dir.person(login)
        if person is None:
            raise jalien_error(ENOENT, f"User {login} cannot be found")
        groups = person.roles
        main = login if login in self.dir.snapshot.roles else (groups[0] if groups else login)
        return [
            {
                "user": login,
                "maingroup": main,
                "groups": ",".join(groups),
                "message": f"User: {login}, main group: {main}\n"
                f"Member of groups: {' '.join(groups)}",
            }
        ]

    def groupmembers(self, session: Session, opts) -> list[Record]:
        group = opts.args[0]
        members = self.dir.members(group)
        if members is None:
            raise jalien_error(ENOENT, f"No group {group}")
        return [
            {
                "group": group,
                "members": ",".join(members),
                "message": f"Members of {group}: {' '.join(members)} ",
            }
        ]

    # -- CEs
    def list_ces(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(args, flags=("s",))
        wanted = {a.upper() for a in opts.args}
        ces = [c for c in self.dir.snapshot.ces if not wanted or c.name.upper() in wanted]
        if wanted and not ces:
            raise jalien_error(ENOENT, f"No such CE: {' '.join(opts.args)}")
        records: list[Record] = []
        for ce in ces:
            line = (
                f"{ce.name:<32} {ce.status:<7} max running {ce.max_running:>6}  max queued "
                f"{ce.max_queued:>5}  TTL {ce.ttl:>6}  {ce.host}"
            )
            records.append(
                {
                    "ceName": ce.name,
                    "site": ce.site,
                    "host": ce.host,
                    "status": ce.status,
                    "maxRunning": str(ce.max_running),
                    "maxQueued": str(ce.max_queued),
                    "TTL": str(ce.ttl),
                    "message": ce.name if "s" in opts else line,
                }
            )
        return records

    def list_partitions(self, session: Session, args: list[str]) -> list[Record]:
        wanted = set(args)
        return [
            {
                "partitionName": p.name,
                "ces": ",".join(p.ces),
                "message": f"{p.name}: {' '.join(p.ces)}",
            }
            for p in self.dir.snapshot.partitions
            if not wanted or p.name in wanted
        ]

    async def set_ce_status(self, session: Session, opts) -> list[Record]:
        status, *names = opts.args
        status = CLOSED if status.lower() in ("close", "closed") else status.lower()
        if status not in CE_STATES:
            raise jalien_error(EINVAL, "usage: setCEstatus open|closed <CE>...")
        records: list[Record] = []
        for name in names:
            try:
                ce = await self.dir.set_ce_status(name, status)
            except DirectoryError as exc:
                raise _failed(exc) from None
            records.append(
                {"ceName": ce.name, "status": ce.status, "message": f"{ce.name} is {ce.status}"}
            )
        return records

    async def resync(self, session: Session, args: list[str]) -> list[Record]:
        try:
            snapshot = await self.dir.refresh(force=True)
        except DirectoryError:
            status = self.dir.status()
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.loaded))
            raise RequestError(
                f"the central configuration could not be read: {status.error}; still serving "
                f"the one read at {when}"
                if status.loaded
                else f"the central configuration could not be read: {status.error}",
                EXIT_NO_CONNECTION,
            ) from None
        text = (
            f"{snapshot.source}: {len(snapshot.people)} users, {len(snapshot.roles)} roles, "
            f"{len(snapshot.ces)} CEs, {len(snapshot.partitions)} partitions, "
            f"{len(snapshot.ses)} SEs"
        )
        for problem in snapshot.problems:
            text += f"\n  problem: {problem}"
        return [
            {
                "source": snapshot.source,
                "users": str(len(snapshot.people)),
                "ces": str(len(snapshot.ces)),
                "problems": str(len(snapshot.problems)),
                "message": text,
            }
        ]

    # -- quotas
    def _quota_user(self, session: Session, words: list[str]) -> str:
        login = words[0] if words else session.identity.login
        if login != session.identity.login and not policy.is_admin(session.identity):
            raise jalien_error(EPERM, f"only an admin may see the quota of {login}")
        if self.dir.person(login) is None:
            raise jalien_error(ENOENT, f"No quota for unknown user {login}")
        return login

    async def _set_quota(
        self, session: Session, words: list[str], fields: dict[str, str], usage: str
    ) -> list[Record]:
        if len(words) != 3:
            raise jalien_error(EINVAL, usage)
        login, field, raw = words
        if field not in fields:
            raise jalien_error(EINVAL, f"Error in parameter name: {field} ({', '.join(fields)})")
        try:
            value = int(raw)
        except ValueError:
            raise jalien_error(EINVAL, f"Error in value: {raw!r} is not a number") from None
        try:
            await self.dir.set_quota(login, field, value)
        except DirectoryError as exc:
            raise _failed(exc) from None
        return [{"message": f"Result: ok, {field}={value} for user={login}"}]

    async def fquota(self, session: Session, args: list[str]) -> list[Record]:
        if not args or args[0] not in ("list", "set"):
            raise jalien_error(EINVAL, FQUOTA_USAGE)
        if args[0] == "set":
            return await self._set_quota(session, args[1:], FILE_QUOTA_FIELDS, FQUOTA_USAGE)
        login = self._quota_user(session, args[1:])
        quota = self.dir.file_quota(login)
        size, files = await self.file_usage(login) if self.file_usage else (0, 0)
        return [
            {
                "username": login,
                "totalSize": str(size),
                "maxTotalSize": str(quota.max_total_size),
                "nbFiles": str(files),
                "maxNbFiles": str(quota.max_nb_files),
                "message": f"{login}: {files}/{quota.max_nb_files} files, "
                f"{size}/{quota.max_total_size} bytes",
            }
        ]

    async def jquota(self, session: Session, args: list[str]) -> list[Record]:
        if not args or args[0] not in ("list", "set"):
            raise jalien_error(EINVAL, JQUOTA_USAGE)
        if args[0] == "set":
            return await self._set_quota(session, args[1:], JOB_QUOTA_FIELDS, JQUOTA_USAGE)
        login = self._quota_user(session, args[1:])
        quota = self.dir.job_quota(login)
        usage = await self.job_usage(login) if self.job_usage else JobUsage()
        return [
            {
                "username": login,
                "running": str(usage.running),
                "waiting": str(usage.waiting),
                "maxUnfinishedJobs": str(quota.max_unfinished_jobs),
                "maxWaitingJobs": str(quota.max_waiting_jobs),
                "nominalParallelJobs": str(quota.max_parallel_jobs),
                "maxParallelJobs": str(quota.max_parallel_jobs),
                "totalCpuCostLast24h": str(usage.cpu_cost),
                "maxTotalCpuCost": str(quota.max_total_cpu_cost),
                "totalRunningTimeLast24h": str(usage.running_time),
                "maxTotalRunningTime": str(quota.max_total_running_time),
                "message": f"{login}: {usage.running} running + {usage.waiting} waiting of at "
                f"most {quota.max_unfinished_jobs}; CPU cost {usage.cpu_cost}/"
                f"{quota.max_total_cpu_cost} s, running time {usage.running_time}/"
                f"{quota.max_total_running_time} s in the last 24 h",
            }
        ]
