"""jcentral's central configuration (docs/ldap.md), composed in plain code: the source the
settings name (files or OpenLDAP), the Directory holding its last good snapshot in the
shared cache, and what the other services take from it - the accounts the authenticator
maps DNs to, the file quota asked at ``access write``, the job quotas and CE status asked
at submit and match, the SEs put into the catalogue, and the commands that show and
change it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from jalien.cache.store import CacheError, CacheStore
from jalien.catalogue.model import StorageElement
from jalien.catalogue.service import Catalogue
from jalien.commands.directory_cmds import DirectoryCommands
from jalien.commands.table import CommandTable
from jalien.config import ConfigError, Settings
from jalien.directory.ldap_source import LdapSource
from jalien.directory.model import SE, DirectoryError, Snapshot
from jalien.directory.service import Directory
from jalien.directory.source import ConfigSource, FileSource
from jalien.jobs.admission import Admission, JobLimits
from jalien.jobs.service import JobService
from jalien.storage.quota import FileQuotaCheck
from jalien.storage.service import StorageService
from jalien.wire.errors import RequestError
from jalien.wire.site_api import CESettings

log = logging.getLogger("jalien.jcentral")
SNAPSHOT_NS = "config.snapshot"


class _SharedSnapshot:
    """The snapshot in the shared cache (one key of its own namespace)."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def get(self) -> bytes | None:
        return self.store.get(SNAPSHOT_NS, b"snapshot")

    def put(self, data: bytes, ttl: float) -> None:
        with contextlib.suppress(CacheError):  # too big, read-only: the memory copy serves
            self.store.set(SNAPSHOT_NS, b"snapshot", data, ttl)


def config_source(settings: Settings) -> ConfigSource:
    if settings.config_backend == "files":
        return FileSource(settings.accounts_path, settings.home_path / "directory.json")
    if settings.config_backend == "ldap":
        password = ""
        if settings.ldap_password_file:
            try:
                with open(settings.ldap_password_file, encoding="utf-8") as fh:
                    password = fh.read().strip()
            except OSError as exc:
                raise ConfigError(f"ldap_password_file: {exc.strerror}") from None
        try:
            return LdapSource(
                settings.ldap_uri,
                settings.ldap_base,
                vo=settings.vo,
                bind_dn=settings.ldap_bind_dn,
                password=password,
                timeout=settings.ldap_timeout,
            )
        except DirectoryError as exc:
            raise ConfigError(str(exc)) from None
    raise ConfigError(f"config_backend must be files or ldap, not {settings.config_backend!r}")


def build_directory(settings: Settings, cache: CacheStore | None = None) -> Directory:
    return Directory(
        config_source(settings),
        ttl=settings.config_ttl,
        cache=_SharedSnapshot(cache) if cache is not None else None,
        last_good=settings.home_path / "directory.last",
        home_of=lambda login: settings.user_home_template.format(initial=login[0], login=login),
    )


def uses_ldap(settings: Settings) -> bool:
    return settings.config_backend == "ldap"


def attach(
    settings: Settings,
    table: CommandTable,
    directory: Directory,
    catalogue: Catalogue,
    jobs: JobService,
    storage: StorageService,
) -> None:
    """The configuration's quotas, CE states and SEs where the services ask, and its
    commands in the table."""

    def file_limits(login: str) -> tuple[int, int]:
        quota = directory.file_quota(login)
        return quota.max_total_size, quota.max_nb_files

    async def home_usage(login: str) -> tuple[int, int]:
        used = await catalogue.backend.du(catalogue.home_of(login))
        return used.size, used.files

    limits: dict[str, JobLimits] = {}  # per user, until the configuration changes
    directory.on_change.append(lambda snapshot: limits.clear())

    def job_limits(user: str) -> JobLimits:  # asked for each user a match looks at
        found = limits.get(user)
        if found is None:
            quota = msgspec.structs.asdict(directory.job_quota(user))
            found = limits[user] = msgspec.convert(quota, JobLimits)
        return found

    file_quota = FileQuotaCheck(file_limits, home_usage, refresh=settings.quota_usage_refresh)
    storage.quota = file_quota
    jobs.admission = Admission(job_limits, directory.ce_refusal)
    jobs.broker.held = jobs.admission.held
    jobs.usage_refresh = settings.quota_usage_refresh

    def ce_settings(name: str) -> CESettings | None:
        ce = directory.ce(name)
        if ce is None:
            return None
        return CESettings(
            name=ce.name,
            status=ce.status,
            max_running=ce.max_running,
            max_queued=ce.max_queued,
            ttl=ce.ttl,
        )

    jobs.ce_settings = ce_settings  # the VoBox takes them with getNumberWaitingJobs
    if uses_ldap(settings):

        async def write_se(se: StorageElement) -> None:
            try:
                await directory.put_se(
                    SE(
                        name=se.name,
                        url=se.url,
                        site=se.site,
                        qos=list(se.qos),
                        capacity=se.capacity,
                        number=se.number,
                    )
                )
            except DirectoryError as exc:
                raise RequestError(f"the SE is in the catalogue but not in LDAP: {exc}") from None

        storage.se_directory = write_se

    async def fresh_usage(login: str) -> tuple[int, int]:
        return await file_quota.usage(login, fresh=True)

    DirectoryCommands(
        table,
        directory,
        home_of=catalogue.home_of,
        file_usage=fresh_usage,
        job_usage=jobs.job_usage,
    ).register()


class SeSync:
    """Puts the directory's SEs into the catalogue after each read (placement and
    ``listSEs`` read them there)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._task: asyncio.Task[None] | None = None
        self._seen: list[SE] = []

    def __call__(self, snapshot: Snapshot) -> None:
        if snapshot.ses == self._seen:
            return
        self._seen = list(snapshot.ses)
        with contextlib.suppress(RuntimeError):  # no running loop: the next read does it
            self._task = asyncio.get_running_loop().create_task(self._put(snapshot.ses))

    async def _put(self, ses: list[SE]) -> None:
        for se in ses:
            record = StorageElement(
                name=se.name,
                url=se.url,
                site=se.site,
                qos=list(se.qos),
                capacity=se.capacity,
                protocols=[se.url.split("://")[0]],
                number=se.number,
            )
            try:
                await self.catalogue.put_se(_CENTRAL, record)
            except Exception as exc:  # a bad record must not stop the others
                log.error("central configuration: SE %s not put in the catalogue: %s", se.name, exc)


class _Central:
    login = "admin"
    roles = ("admin",)


_CENTRAL = _Central()
