"""jcentral: the central services in one process: the network core, the catalogue, the
task queue and broker, token certificates; the cache and data movers plug in here."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from jalien.auth.cadir import write_ca_dir
from jalien.auth.errors import AuthError
from jalien.auth.policy import ActionOf
from jalien.auth.tls import server_context
from jalien.auth.tokens import TokenAuthority
from jalien.cache.store import CacheStore
from jalien.catalogue.backend import CatalogueBackend
from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.expiry import LfnExpiry
from jalien.catalogue.expiry_reaper import ExpiryReaper
from jalien.catalogue.optimiser_log import MariaDBOptimiserLog, OptimiserLog, SQLiteOptimiserLog
from jalien.catalogue.optimizers import CatalogueOptimizers
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.archive_cmds import ArchiveCommands
from jalien.commands.background_cmds import BackgroundCommands
from jalien.commands.basic import BasicCommands
from jalien.commands.cache_cmds import CacheCommands
from jalien.commands.catalogue_cmds import CatalogueCommands, home_preparer
from jalien.commands.collection_cmds import CollectionCommands
from jalien.commands.datamover_cmds import DataMoverCommands
from jalien.commands.dispatch import Dispatcher
from jalien.commands.info_cmds import InfoCommands, bind_dispatcher
from jalien.commands.job_cmds import JobCommands
from jalien.commands.lifecycle_cmds import LifecycleCommands
from jalien.commands.optimizer_cmds import OptimizerCommands
from jalien.commands.storage_cmds import StorageCommands
from jalien.commands.table import CommandTable
from jalien.commands.token import TokenCommands
from jalien.config import ConfigError, Settings
from jalien.datamovers.lifecycle import Lifecycle
from jalien.datamovers.service import DataMovers
from jalien.directory.service import Directory
from jalien.jobs.broker import Broker
from jalien.jobs.broker_feed import BrokerFeed
from jalien.jobs.queue import TaskQueue
from jalien.jobs.service import JobService
from jalien.jobs.store import TaskQueueStore
from jalien.jobs.watchdog import Watchdog
from jalien.loops import LoopRegistry
from jalien.metrics import Metrics
from jalien.net.audit import AuditLog
from jalien.net.identity import AccountsAuthenticator, Identity
from jalien.net.limits import limits_from
from jalien.net.server import Server
from jalien.roles.central_cache import (
    PackageShare,
    build_cache,
    catalogue_cache,
    logins,
    release_readers,
    serve_textcache,
)
from jalien.roles.central_config import SeSync, attach, build_directory, uses_ldap
from jalien.roles.central_monitor import (
    ASKED_NS,
    ASKED_POLICY,
    CacheRollups,
    CentralMonitor,
    PageState,
    build_monitor,
    monitor_commands,
    rollup_loop,
    start_page,
)
from jalien.roles.central_peers import start_peers
from jalien.roles.datamovers_wiring import (
    build_datamovers,
    datamover_metrics,
    read_collections_with,
)
from jalien.roles.lifecycle_wiring import build_lifecycle, hook_storage, lifecycle_metrics
from jalien.roles.role_metrics import central_metrics, start_metrics
from jalien.roles.start import LogOptions, run_role, started, stop_event
from jalien.roles.worker_follow import follow_loop
from jalien.roles.workers import SINGLE, WorkerSlot, run_workers, worker_count
from jalien.storage.envelope import EnvelopeSigner
from jalien.storage.service import StorageService
from jalien.wire.errors import EXIT_USAGE

log = logging.getLogger("jalien.jcentral")


def token_authority(settings: Settings) -> TokenAuthority:
    """The token CA under the jalien home (made on first start when `setup` did not), and
    trusted in the CA directory so that servers accept the tokens it issues."""
    authority, created = TokenAuthority.load_or_create(settings.home_path / "ca")
    if created:
        log.info("created the token CA in %s", settings.home_path / "ca")
    try:
        write_ca_dir(settings.ca_dir_path, [authority.ca_cert])
    except AuthError as exc:  # e.g. a read-only system CA directory
        log.warning("token certificates will be refused: %s", exc)
    return authority


def catalogue_backend(settings: Settings) -> CatalogueBackend:
    if settings.catalogue_backend == "sqlite":
        return SQLiteBackend(
            settings.home_path / "catalogue.db",
            inline_reads=settings.sqlite_inline_reads,
            kept_reads=settings.sqlite_kept_reads,
        )
    if settings.catalogue_backend == "mariadb":
        from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

        try:
            config = msgspec.convert(settings.catalogue_mariadb, MariaDBConfig)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"[catalogue_mariadb]: {exc}") from None
        return MariaDBBackend(config)
    raise ConfigError(
        f"catalogue_backend must be sqlite or mariadb, not {settings.catalogue_backend!r}"
    )


def build_catalogue(settings: Settings, cache: CacheStore | None = None) -> Catalogue:
    backend = catalogue_backend(settings)
    answers = catalogue_cache(cache) if cache is not None else MemoryCache()
    return Catalogue(backend, home_template=settings.user_home_template, cache=answers)


def task_queue(settings: Settings) -> TaskQueue:
    if settings.taskqueue_backend == "sqlite":
        return TaskQueueStore(settings.home_path / "taskqueue.db")
    if settings.taskqueue_backend == "mariadb":
        try:
            from jalien.jobs.mariadb_store import MariaDBTaskQueue, MariaDBTaskQueueConfig
        except ImportError as exc:
            raise ConfigError(f"taskqueue_backend = mariadb: {exc} (install mysqlclient)") from None
        try:
            config = msgspec.convert(settings.taskqueue_mariadb, MariaDBTaskQueueConfig)
            return MariaDBTaskQueue(config.dsn, readers=config.readers)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(f"[taskqueue_mariadb]: {exc}") from None
    raise ConfigError(
        f"taskqueue_backend must be sqlite or mariadb, not {settings.taskqueue_backend!r}"
    )


def optimiser_log(settings: Settings) -> OptimiserLog:
    """Where optimiserLogs is kept: the sharded catalogue's index database, else the home."""
    if settings.catalogue_backend == "mariadb":
        from jalien.catalogue.mariadb_backend import MariaDBConfig

        config = msgspec.convert(settings.catalogue_mariadb, MariaDBConfig)  # checked before
        return MariaDBOptimiserLog(config.hosts[config.index_host])
    return SQLiteOptimiserLog(settings.home_path / "optimiser.db")


def catalogue_optimizers(settings: Settings, catalogue: Catalogue) -> CatalogueOptimizers:
    return CatalogueOptimizers(
        catalogue.backend,
        optimiser_log(settings),
        guid_max_rows=settings.guid_table_max_rows,
        lfn_max_rows=settings.lfn_table_max_rows,
    )


def build_jobs(settings: Settings, tokens: TokenAuthority) -> JobService:
    store = task_queue(settings)
    return JobService(store, Broker(), tokens=tokens, home_template=settings.user_home_template)


def build_server(
    settings: Settings,
    catalogue: Catalogue,
    jobs: JobService,
    tokens: TokenAuthority,
    cache: CacheStore | None = None,
    directory: Directory | None = None,
    movers: DataMovers | None = None,
    expiry: LfnExpiry | None = None,
    lifecycle: Lifecycle | None = None,
    loops: LoopRegistry | None = None,
    optimizers: CatalogueOptimizers | None = None,
    monitor: CentralMonitor | None = None,
) -> Server:
    """The object graph of jcentral, in plain code."""
    directory = directory or build_directory(settings, cache)
    accounts = AccountsAuthenticator(
        settings.accounts_path,
        tokens=tokens,
        source=directory.accounts if uses_ldap(settings) else None,  # LDAP: its people
    )
    table = build_commands(
        settings,
        catalogue,
        jobs,
        tokens,
        accounts,
        cache,
        directory=directory,
        movers=movers,
        expiry=expiry,
        lifecycle=lifecycle,
        loops=loops,
        optimizers=optimizers,
        monitor=monitor,
    )
    dispatcher = Dispatcher(
        table,
        site=settings.site,
        credential_check=jobs.token_alive,
        prepare=home_preparer(catalogue),
    )
    bind_dispatcher(table, dispatcher)  # time runs commands through it, w lists its sessions
    context = server_context(settings.host_cert_path, settings.host_key_path, settings.ca_dir_path)
    limits = limits_from(settings)
    return Server(
        dispatcher,
        context,
        accounts,
        identify_dn=accounts.identify_dn,
        limits=limits,
        audit=AuditLog.from_settings(settings, "jcentral"),
    )


def build_commands(
    settings: Settings,
    catalogue: Catalogue,
    jobs: JobService,
    tokens: TokenAuthority,
    accounts: AccountsAuthenticator,
    cache: CacheStore | None = None,
    directory: Directory | None = None,
    movers: DataMovers | None = None,
    expiry: LfnExpiry | None = None,
    lifecycle: Lifecycle | None = None,
    loops: LoopRegistry | None = None,
    optimizers: CatalogueOptimizers | None = None,
    monitor: CentralMonitor | None = None,
) -> CommandTable:
    """jcentral's command table (also what docs/permissions.md is generated from)."""
    table = CommandTable()
    registry = loops if loops is not None else LoopRegistry()
    BackgroundCommands(table, registry).register()
    OptimizerCommands(
        table,
        optimizers.journal if optimizers is not None else optimiser_log(settings),
        registry,
        optimizers.move_directory if optimizers is not None else None,
    ).register()
    BasicCommands(table, motd=settings.motd).register()
    catalogue_commands = CatalogueCommands(table, catalogue)
    catalogue_commands.register()
    signer, created = EnvelopeSigner.load_or_create(settings.home_path / "envelope")
    if created:
        log.info("created the envelope signing key in %s", settings.home_path / "envelope")
    storage = StorageService(catalogue, signer, str(settings.ca_dir_path))  # access, commit
    StorageCommands(table, storage).register()
    job_commands = JobCommands(table, jobs, read_file=storage.read_small_file, catalogue=catalogue)
    if settings.shared_ports and cache is not None:  # a worker: jobListMatch sees them all
        job_commands.shared_seen = CacheRollups(cache, ASKED_NS, ASKED_POLICY)
    job_commands.register()
    if expiry is None:
        expiry = LfnExpiry(settings.home_path / "lfnexpiry.db")  # started at its first use
    InfoCommands(
        table, catalogue, read_file=storage.read_small_file, checker=storage.checker, expiry=expiry
    ).register()
    collections = CollectionCommands(
        table, catalogue, storage.read_small_file, storage.write_small_file
    )
    collections.register()
    catalogue_commands.save_collection, jobs.collections = collections.save, collections.lfns_of
    jobs.locations = collections.ses_of  # Split=se groups the inputs by their SEs
    ArchiveCommands(table, storage.archive_members).register()
    if movers is None:  # command_actions' throw-away table
        movers, _ = build_datamovers(settings, catalogue)
    read_collections_with(movers, collections.lfns_of)  # mirror of an XML collection
    DataMoverCommands(table, catalogue, movers.transfers, movers.deletions).register()
    if lifecycle is None:  # command_actions' throw-away table
        lifecycle = build_lifecycle(settings, catalogue, movers)
    hook_storage(storage, lifecycle)  # decommissioned SEs read-only, the rules at commit
    LifecycleCommands(table, lifecycle).register()  # rules, seDecommission, seCheck
    find_login: Callable[[str], Identity] = accounts.identify_login
    if cache is not None:
        CacheCommands(table, cache).register()
        find_login = logins(cache, settings, accounts.identify_login)
    TokenCommands(table, tokens, find_login, job_tokens=jobs).register()
    monitor_commands(table, jobs, monitor or build_monitor(jobs, None))  # spy, gridstatus
    # the central configuration: users, roles, CEs, quotas (docs/ldap.md)
    attach(settings, table, directory or build_directory(settings), catalogue, jobs, storage)
    return table


def command_actions() -> dict[str, ActionOf]:
    """jcentral's commands and the action each declares, from a table built in a throw-away
    home (docs/permissions.md and the permission tests are made from it)."""
    with tempfile.TemporaryDirectory(prefix="jalien-commands-") as home:
        settings = Settings(home=home)
        tokens, _ = TokenAuthority.load_or_create(Path(home) / "ca")
        cache = build_cache(settings)
        try:
            table = build_commands(
                settings,
                build_catalogue(settings, cache),
                build_jobs(settings, tokens),
                tokens,
                AccountsAuthenticator(settings.accounts_path, tokens=tokens),
                cache,
            )
        finally:
            cache.close()
    return {command.name: command.action for command in table}


async def serve(settings: Settings, slot: WorkerSlot = SINGLE) -> None:
    """jcentral in this process: alone (SINGLE), or as worker *slot* of a supervisor
    (roles/workers.py): the once-per-host loops only in worker 0."""
    tokens = token_authority(settings)
    cache = build_cache(settings)
    catalogue = build_catalogue(settings, cache)
    jobs = build_jobs(settings, tokens)
    jobs.packages.shared = PackageShare(cache)  # the host's workers learn the packages together
    movers, mover = build_datamovers(settings, catalogue)  # rm's PFNs go to its queue
    lifecycle = build_lifecycle(settings, catalogue, movers)  # rules, decommissions, dark data
    expiry = LfnExpiry(settings.home_path / "lfnexpiry.db")
    directory = build_directory(settings, cache)
    directory.on_change.append(SeSync(catalogue))  # LDAP's SEs into the catalogue
    loops = LoopRegistry()  # jcentral's loops and thread pools (admins: `background`)
    loops.add_pools(catalogue.backend.pools)
    loops.add_pools(jobs.store.pools)
    loops.add_pools(cache.pools)
    optimizers = catalogue_optimizers(settings, catalogue)
    loops.add_pools(optimizers.journal.pools)
    # the grid as sites report it (shared by the workers), spy
    monitor = build_monitor(jobs, cache, shared=slot.count > 1)
    server = build_server(
        settings,
        catalogue,
        jobs,
        tokens,
        cache,
        directory,
        movers=movers,
        expiry=expiry,
        lifecycle=lifecycle,
        loops=loops,
        optimizers=optimizers,
        monitor=monitor,
    )
    loops.add_pools(server.audit.pools)
    once = slot.singletons  # this process runs the once-per-host loops
    textcache = await serve_textcache(settings, cache)
    metrics = central_metrics(settings, server, jobs, cache, loops)
    datamover_metrics(metrics, movers)  # removals and transfers
    lifecycle_metrics(metrics, lifecycle)  # rules, decommissions, dark data
    metrics_http = await start_metrics(settings, metrics)
    loops.start(rollup_loop(monitor, jobs, metrics, settings.monitor_rollup_interval))
    local_se = (settings.se_name, settings.se_root_path) if settings.embedded_se else None
    shown = PageState(monitor, jobs, catalogue, loops, metrics, local_se)
    page = await start_page(settings, server, shown, metrics)  # monitor_web_port
    loops.start(release_readers(cache))
    await catalogue.backend.start()
    await optimizers.journal.start()
    for loop in optimizers.loops(settings.optimizer_guid_interval, settings.optimizer_lfn_interval):
        if once:
            loops.start(loop)
    await jobs.store.start()
    # one of several centrals: agent routes, the catalogue's change log (docs/multicentral.md)
    # (the change log is followed once per host: its workers share the cache it drops from)
    peers = await start_peers(settings, catalogue, jobs, monitor.spy, loops, follow=once)
    await movers.start()
    loops.add_pools(movers.store.pools)
    for loop in movers.loops(settings.deletion_interval, settings.transfer_interval):
        if once:
            loops.start(loop)
    await lifecycle.start()
    for loop in lifecycle.loops(
        settings.rules_interval, settings.decommission_interval, settings.darkdata_interval
    ):
        if once:
            loops.start(loop)
    if once:
        loops.start(ExpiryReaper(catalogue, expiry, _CENTRAL).loop(settings.lfn_expiry_interval))
    se = None
    watchdog = Watchdog(
        jobs,
        heartbeat_timeout=settings.job_heartbeat_timeout,
        zombie_timeout=settings.job_zombie_timeout,
        max_resubmits=settings.job_max_resubmits,
    )
    if once:
        loops.start(watchdog.loop(settings.job_watchdog_interval))
    loops.start(jobs.keep_live(settings.job_live_refresh))
    loops.start(jobs.quota_loop(settings.job_quota_interval))
    try:
        await jobs.start()
        if settings.broker_refill > 0:  # what other processes queued (jobs.broker_feed)
            feed = BrokerFeed(jobs.store, jobs.broker, high=max(jobs.broker.ids(), default=0))
            loops.start(feed.loop(settings.broker_refill, settings.broker_resync))
            jobs.refill = feed.refill_new  # and at a miss: a job just queued elsewhere
        await directory.start()  # LDAP away: its last good copy, said loudly
        loops.start(directory.loop())
        if slot.count > 1 and settings.worker_follow > 0:  # what the other workers changed
            loops.start(follow_loop(directory, lifecycle, settings.worker_follow))
        if settings.embedded_se:
            se = await embedded_se(settings, catalogue, metrics)
        await _run(settings, server, slot)
    finally:
        server.audit.close()  # what is pending is written
        await loops.stop_all(timeout=5.0)
        if se is not None:
            await se.close()
        await lifecycle.close()
        await movers.close()
        await mover.close()
        await peers.close()
        await jobs.store.close()
        await optimizers.journal.close()
        await catalogue.backend.close()
        if textcache is not None:
            await textcache.close()
        if metrics_http is not None:
            await metrics_http.close()
        if page is not None:
            await page.close()
        await asyncio.to_thread(cache.close)


async def embedded_se(settings: Settings, catalogue: Catalogue, metrics: Metrics | None = None):
    """The single-machine SE inside jcentral, registered in the catalogue under se_name."""
    from jalien.catalogue.model import StorageElement
    from jalien.roles.se import SEListeners, start_se, start_se_xrootd

    signer, _ = EnvelopeSigner.load_or_create(settings.home_path / "envelope")
    se, port = await start_se(settings, signer.verifier, metrics)
    xrootd, xport = await start_se_xrootd(settings, signer.verifier)
    # alien.py's grid: the root:// URL first, the same files over HTTPS as another endpoint
    record = StorageElement(
        name=settings.se_name,
        url=settings.se_xrootd_url(xport) if xrootd else settings.se_url(port),
        endpoints=[settings.se_url(port)] if xrootd else [],
        site=settings.site,
        qos=["disk"],
        protocols=["root", "https"] if xrootd else ["https"],
    )
    await catalogue.put_se(_CENTRAL, record)
    return SEListeners(se, xrootd)


class _Central:
    login = "admin"
    roles = ("admin",)


_CENTRAL = _Central()


def ready_text(settings: Settings) -> str:
    return (
        f"ready: wss://{settings.listen[0]}:{settings.ws_port}/websocket/json and "
        f"binary channel on port {settings.binary_port}"
    )


async def _run(settings: Settings, server: Server, slot: WorkerSlot) -> None:
    await server.start(
        settings.listen, settings.ws_port, settings.binary_port, reuse_port=settings.shared_ports
    )
    stop = stop_event()
    started()
    if slot.count > 1:
        slot.ready()  # the supervisor says "jcentral ready" once every worker serves
    else:
        print(f"jcentral {ready_text(settings)}", flush=True)
    await stop.wait()
    log.info("stopping")
    await server.close()


def run_jcentral(settings: Settings) -> int:
    """jcentral: one process (``workers = 1``), or a supervisor of ``workers`` (0: one per
    core) processes sharing the ports, the databases and the cache (roles/workers.py)."""
    if settings.workers < 0:
        print(
            "jalien-bin: cannot start jcentral: workers must be 0 (one per core) or more, "
            f"not {settings.workers}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_USAGE
    if worker_count(settings.workers) > 1:
        return run_workers(settings, _worker, ready_text)
    return _worker(settings, SINGLE)


def _worker(settings: Settings, slot: WorkerSlot) -> int:
    return run_role(
        lambda: serve(settings, slot),
        log_level=settings.log_level,
        log=LogOptions.from_settings(settings, "jcentral"),
        prefix="jalien-bin: cannot start jcentral: ",
    )
