"""The central configuration as jcentral uses it: the last good snapshot of its source,
kept in memory and in the shared cache (other central processes of the host take it from
there instead of asking LDAP again) with a time to live, re-read by the ``config-resync``
loop every TTL and at once by ``resyncLDAP``.

When the source cannot be read (LDAP down, a tree without ``ou=People``) the last good
configuration is kept - in memory, else from the shared cache, else from the last-good
file written at each good read (a restart while LDAP is down) - and the problem is logged
as an error at every attempt and shown by ``resyncLDAP`` (``status()``) until it is read
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from jalien.auth.accounts import Account, AccountMap
from jalien.auth.errors import AuthError
from jalien.auth.files import write_file
from jalien.directory.model import (
    CE,
    CLOSED,
    DEFAULT_FILE_QUOTA,
    DEFAULT_JOB_QUOTA,
    SE,
    DirectoryError,
    FileQuota,
    JobQuota,
    Person,
    Snapshot,
    effective,
)
from jalien.directory.source import ConfigSource
from jalien.loops import Loop

log = logging.getLogger("jalien.directory")


class SnapshotCache(Protocol):
    """Where the processes of a host share the snapshot (the role's CacheStore)."""

    def get(self) -> bytes | None: ...
    def put(self, data: bytes, ttl: float) -> None: ...


class DirectoryStatus(msgspec.Struct, kw_only=True):
    source: str
    loaded: float  # when the configuration in use was read (0: never)
    error: str = ""  # the last attempt's problem ("" : it worked)
    failing_since: float = 0.0
    problems: list[str] = []


_decoder = msgspec.msgpack.Decoder(Snapshot)


class Directory:
    def __init__(
        self,
        source: ConfigSource,
        *,
        ttl: float = 300.0,
        cache: SnapshotCache | None = None,
        last_good: Path | None = None,
        clock: Callable[[], float] = time.time,
        home_of: Callable[[str], str] | None = None,
    ) -> None:
        self.source = source
        self.home_of = home_of  # a person's home when the entry names none
        self.ttl = ttl
        self.cache = cache
        self.last_good = last_good
        self.clock = clock
        self.error = ""
        self.failing_since = 0.0
        self.on_change: list[Callable[[Snapshot], object]] = []  # called after each adoption
        self._seen: bytes | None = None  # the shared cache's bytes adopt_cached saw last
        self._adopt(Snapshot(source=source.name))

    # -- the snapshot and its indexes
    def _adopt(self, snapshot: Snapshot) -> None:
        old = getattr(self, "snapshot", None)
        self.snapshot = snapshot
        self._people = {p.login: p for p in snapshot.people}
        self._ces = {c.name.upper(): c for c in snapshot.ces}
        accounts = AccountMap()
        for person in snapshot.people:
            for dn in person.dns:
                try:
                    accounts.add(
                        Account(
                            login=person.login,
                            dn=dn,
                            roles=person.roles,
                            home=person.home
                            or (self.home_of(person.login) if self.home_of else ""),
                        )
                    )
                except AuthError as exc:
                    log.error("central configuration: %s", exc)
        self._accounts = accounts
        if old is None or old.problems != snapshot.problems:
            for problem in snapshot.problems:
                log.warning("central configuration: %s", problem)
        for hook in self.on_change:
            hook(snapshot)

    def accounts(self) -> AccountMap:
        """DN -> account, every DN of every person (the authenticator's map)."""
        return self._accounts

    def person(self, login: str) -> Person | None:
        return self._people.get(login)

    def people(self) -> list[Person]:
        return self.snapshot.people

    def members(self, role: str) -> list[str] | None:
        return self.snapshot.roles.get(role)

    def ce(self, name: str) -> CE | None:
        return self._ces.get(name.upper())

    def ce_refusal(self, name: str) -> str:
        """Why the CE *name* takes no new job ("" : it does, or it is not configured)."""
        ce = self._ces.get(name.upper()) if name else None
        if ce is not None and ce.status == CLOSED:
            return f"CE {ce.name} is closed by central services: no new jobs (setCEstatus)"
        return ""

    def file_quota(self, login: str) -> FileQuota:
        person = self._people.get(login)
        return effective(person.file_quota if person else FileQuota(), DEFAULT_FILE_QUOTA)

    def job_quota(self, login: str) -> JobQuota:
        person = self._people.get(login)
        return effective(person.job_quota if person else JobQuota(), DEFAULT_JOB_QUOTA)

    def status(self) -> DirectoryStatus:
        return DirectoryStatus(
            source=self.source.name,
            loaded=self.snapshot.loaded,
            error=self.error,
            failing_since=self.failing_since,
            problems=self.snapshot.problems,
        )

    # -- reading the source
    async def start(self) -> None:
        """The first read; without the source, the shared cache's or the last-good file's
        copy (said loudly); without any, an empty configuration until the source answers."""
        try:
            await self.refresh()
            return
        except DirectoryError:
            pass
        if self.last_good is not None:
            try:
                data = await asyncio.to_thread(self.last_good.read_bytes)
                self._adopt(_decoder.decode(data))
                log.error(
                    "central configuration: using the last good copy %s, read from %s at %s",
                    self.last_good,
                    self.snapshot.source,
                    _when(self.snapshot.loaded),
                )
            except (OSError, msgspec.DecodeError) as exc:
                log.error("central configuration: no last good copy either (%s)", exc)

    async def refresh(self, *, force: bool = False) -> Snapshot:
        """A newer snapshot from the shared cache (unless *force*), else from the source;
        DirectoryError (logged, the last good one kept) when the source cannot be read."""
        if not force and self.cache is not None:
            data = self.cache.get()
            if data is not None:
                try:
                    cached = _decoder.decode(data)
                except msgspec.DecodeError:
                    cached = None
                if cached is not None and cached.loaded > self.snapshot.loaded:
                    self._adopt(cached)
                    self._ok()
                    return cached
                if cached is not None and self.clock() - cached.loaded < self.ttl:
                    return self.snapshot
        try:
            snapshot = await asyncio.to_thread(self.source.load)
        except DirectoryError as exc:
            self._failed(str(exc))
            raise
        self._adopt(snapshot)
        self._ok()
        data = msgspec.msgpack.encode(snapshot)
        if self.cache is not None:
            self.cache.put(data, self.ttl)
        if self.last_good is not None:
            try:
                await asyncio.to_thread(write_file, self.last_good, data, 0o600, overwrite=True)
            except (AuthError, OSError) as exc:
                log.warning("central configuration: cannot keep a last good copy: %s", exc)
        return snapshot

    def _ok(self) -> None:
        if self.error:
            log.warning("central configuration: %s answers again", self.source.name)
        self.error, self.failing_since = "", 0.0

    def _failed(self, why: str) -> None:
        if not self.error:
            self.failing_since = self.clock()
        self.error = why
        loaded = self.snapshot.loaded
        log.error(
            "central configuration NOT refreshed: %s - keeping the configuration read %s",
            why,
            f"at {_when(loaded)}" if loaded else "never (nobody can log in until it is read)",
        )

    def loop(self) -> Loop:
        """``config-resync``: every TTL; a failure is logged by ``refresh`` and retried at
        the next interval (no back-off beyond it: the directory is wanted back soon)."""

        async def step() -> None:
            with contextlib.suppress(DirectoryError):
                await self.refresh()

        return Loop("config-resync", step, self.ttl, logger=log)

    def adopt_cached(self) -> bool:
        """Take the snapshot another process of the host adopted (a write or a resync
        there), if the shared cache holds a newer one than ours; never asks the source.
        Cheap when nothing changed (the cached bytes compared with the last seen)."""
        if self.cache is None:
            return False
        data = self.cache.get()
        if data is None or data == self._seen:
            return False
        self._seen = data
        try:
            cached = _decoder.decode(data)
        except msgspec.DecodeError:
            return False
        if cached.loaded <= self.snapshot.loaded:
            return False
        self._adopt(cached)
        self._ok()
        return True

    # -- changes (written to the source, then read back)
    async def _write(self, fn: Callable[[], object]) -> None:
        await asyncio.to_thread(fn)
        try:
            await self.refresh(force=True)
        except DirectoryError as exc:
            raise DirectoryError(f"written, but not read back: {exc}") from None

    async def set_ce_status(self, name: str, status: str) -> CE:
        ce = self.ce(name)
        if ce is None:
            known = ", ".join(c.name for c in self.snapshot.ces) or "none"
            raise DirectoryError(f"no CE {name} in the central configuration (known: {known})")
        await self._write(lambda: self.source.set_ce_status(ce, status))
        return self.ce(name) or ce

    async def set_quota(self, login: str, field: str, value: int) -> Person:
        person = self.person(login)
        if person is None:
            raise DirectoryError(f"no user {login} in the central configuration")
        await self._write(lambda: self.source.set_quota(person, field, value))
        return self.person(login) or person

    async def put_se(self, se: SE) -> bool:
        """Write an SE to the source; False when the source keeps no SEs."""
        written = await asyncio.to_thread(self.source.put_se, se)
        if written:
            try:
                await self.refresh(force=True)
            except DirectoryError as exc:
                raise DirectoryError(f"written, but not read back: {exc}") from None
        return written


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
