"""One Settings struct for every role: defaults < config file < environment < flags.

Paths follow the grid's habits: the user's identity in ~/.globus, CA certificates in
X509_CERT_DIR, and jalien's own state (dev CA, host credentials, databases) in
JALIEN_STATE_DIR (default ~/.jalien). JALIEN_HOME is not read: in JAliEn's token files and
a job's environment it names the user's grid home directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

ENV_PREFIX = "JALIEN_"


class Settings(msgspec.Struct, kw_only=True):
    home: str = "~/.jalien"
    central_host: str = "localhost"  # where clients and lower levels connect upstream
    # several central endpoints, as behind a DNS alias ("host:port" of binary channels);
    # when given, upstream connections use these instead of central_host/binary_port: each
    # client starts at a random one and moves to the next when it fails (docs/multihost.md)
    central_hosts: list[str] = []
    listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1", "::1"])
    ws_port: int = 8097
    binary_port: int = 8098
    # jcentral's worker processes (docs/ARCHITECTURE.md, roles/workers.py): 0 = one per core
    # of the host, 1 = a single process; the workers share the listening ports
    # (SO_REUSEPORT), the catalogue, the task queue and the shared cache
    workers: int = 0
    shared_ports: bool = False  # set by the supervisor for its workers (SO_REUSEPORT)
    # seconds between a worker's looks at what the others changed of the central
    # configuration, placement rules and decommissions (roles/worker_follow.py); 0: never
    worker_follow: float = 1.0
    vo: str = "alice"
    vo_root: str = "/alice"
    user_home_template: str = "/alice/cern.ch/user/{initial}/{login}/"
    site: str = "JALIEN::LOCAL::SITE"
    host_cert: str = ""  # default: {home}/host/hostcert.pem
    host_key: str = ""
    ca_dir: str = ""  # default: X509_CERT_DIR or {home}/certificates
    accounts_file: str = ""  # default: {home}/accounts.toml
    catalogue_backend: str = "sqlite"  # "sqlite" (embedded) or "mariadb" (sharded)
    # for mariadb: a [catalogue_mariadb] table, see jalien.catalogue.mariadb_backend
    # (hosts = ["mysql://root@127.0.0.1:3306/alice_data"], prefixes = {"/alice/data/" = 1})
    catalogue_mariadb: dict[str, Any] = {}
    # short SQLite reads (point lookups, a page of a listing) on the event loop's thread:
    # cheaper than the hop to a reader thread (bench/bench_requests.py)
    sqlite_inline_reads: bool = True
    # with inline reads: lookups and whole small listings kept while the catalogue file has
    # not changed (SQLite's data_version; jalien.sqlstore.kept_reads)
    sqlite_kept_reads: bool = True
    taskqueue_backend: str = "sqlite"  # "sqlite" (embedded) or "mariadb" (one server)
    # for mariadb: a [taskqueue_mariadb] table, see jalien.jobs.mariadb_store
    # (dsn = "mysql://root@127.0.0.1:3306/alice_queue", readers = 2)
    taskqueue_mariadb: dict[str, Any] = {}
    max_message_size: int = 16 * 1024 * 1024
    max_connections: int = 10_000
    idle_timeout: float = 3600.0
    write_buffer_high: int = 4 * 1024 * 1024
    # the rest of net.limits.Limits (same names, same defaults: tests/net/test_limits_settings.py)
    max_in_flight: int = 1024
    handshake_timeout: float = 15.0
    compress_threshold: int = 8 * 1024
    compress_local: bool = False
    deflate: bool = True
    deflate_threshold: int = 8 * 1024
    deflate_level: int = 1
    identity_soft: int = 256
    identity_hard: int = 1024
    turns: int = 2
    motd: str = "Welcome to jalien, a JAliEn-compatible grid middleware."
    log_level: str = "INFO"
    # each process's own log on stderr: "text" (readable lines) or "json" (JSON lines,
    # JALIEN_LOG_FORMAT=json); the last log_recent_lines lines are kept in memory for
    # `logs vobox CE` / `logs job ID` from central (docs/monitoring.md)
    log_format: str = "text"
    log_recent_lines: int = 1000
    # the audit log: one JSON line per request served (docs/audit.md), rotated at
    # audit_max_bytes, audit_backups older files kept
    audit_file: str = ""  # default: {home}/log/audit.jsonl
    audit_max_bytes: int = 64 * 1024 * 1024
    audit_backups: int = 5
    # storage: the embedded SE (``--role se``, or inside jcentral when embedded_se is set)
    embedded_se: bool = False
    se_name: str = "ALICE::LOCAL::SE"
    se_root: str = ""  # default: {home}/se
    se_port: int = 8099
    se_host: str = ""  # the host in the SE's URL (default: the first listen address)
    se_max_rate: int = 0  # bytes/s per download (0: unlimited); for tests and shared links
    # the same SE over XRootD (root://host:port//se, docs/se-xrootd.md) beside HTTPS;
    # -1: none (the default: every test's jcentral would want the port), 0: any free port
    # (printed; registered PFNs name it, so a lasting grid fixes it: ./jalien.sh run uses 8094)
    se_xrootd_port: int = -1
    envelope_key: str = ""  # the SE's copy of central's public key: {home}/envelope/envelope.pub
    # cache: the LMDB store the central processes of a host share, and its TextCache port
    cache_dir: str = ""  # default: {home}/cache
    cache_map_size: int = 1 << 30  # the most the store may take on disk
    cache_http_port: int = 8888  # JAliEn's TextCache shape over HTTP; -1: none
    cache_http_listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    # metrics (docs/monitoring.md): GET /metrics in the Prometheus text format on loopback
    # HTTP; -1: none, 0: any free port (logged). Each process of a host needs its own port.
    metrics_port: int = -1
    metrics_listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    metrics_requests: bool = True  # count requests by command (bench_metrics' baseline: off)
    # reports upstream (docs/monitoring.md): a JobAgent's and a VoBox's every this many
    # seconds (a VoBox's at least once per cycle); central's minutes of the grid
    monitor_report_interval: float = 60.0
    monitor_rollup_interval: float = 60.0
    # the monitoring page (HTTPS, grid certificates): -1 none, 0 any free port (printed)
    monitor_web_port: int = -1
    monitor_web_interval: float = 1.0  # seconds between the page's live updates
    # jobagent (worker nodes; the VoBox's startup script sets these, see docs/site.md)
    ce: str = ""  # the computing element the agent matches for (JALIEN_CE)
    jobagent_ttl: int = 3600  # seconds this JobAgent may live
    cores: int = 1  # cores this JobAgent offers
    workdir: str = ""  # job sandboxes go below (default: $TMPDIR)
    # packages (docs/site.md): a CVMFS-layout tree, <dir>/<arch>/Modules/modulefiles/<P>/<v>
    # loaded through Environment Modules; its listing is advertised to central
    packages_dir: str = ""  # the tree's root (/cvmfs/alice.cern.ch); "": no packages
    packages_arch: str = ""  # <arch> below it; "": the only one, or this host's OS's
    packages_modulecmd: str = ""  # Environment Modules' modulecmd; "": from PATH
    packages_refresh: float = 600.0  # seconds between two listings of the tree
    jobagent_max_jobs: int = 0  # 0: as many as the TTL allows
    monitor_interval: float = 30.0  # seconds between payload samples and heartbeats
    # vobox (a site's computing element, see docs/site.md); ce, jobagent_ttl, cores, workdir
    # and packages_dir above are what its JobAgents get
    batch: str = "fork"  # "fork" (processes on this host), "slurm" or "arc" (an ARC CE)
    max_running_agents: int = 10  # our JobAgents in the batch system, queued + running
    max_queued_agents: int = 5  # of which queued (also the most submitted per cycle)
    submit_interval: float = 60.0  # seconds between the VoBox's cycles
    jobagent_command: str = ""  # the agents' jalien-bin (a CVMFS path); default: this one
    jobagent_token_hours: float = 24.0  # lifetime asked for the agents' JobAgent token
    agent_start_grace: float = 120.0  # a running agent this young has not taken its job yet
    agent_dir_keep: float = 2 * 86400.0  # seconds an ended agent's directory and log stay
    vobox_dir: str = ""  # agent directories and status.json; default: {home}/vobox
    vobox_cert: str = ""  # its upstream identity (account with role proxy); default host_cert
    vobox_key: str = ""
    vobox_host: str = ""  # the name worker nodes reach it by; default: the first listen address
    vobox_ws_port: int = 0  # its listeners for worker nodes (0: any free port; -1: none)
    vobox_binary_port: int = 0
    # worker nodes without network (docs/relay.md): the VoBox relays a shared-filesystem
    # spool (JALIEN_SPOOL_DIR) and its agents use it instead of a TCP port
    spool_dir: str = ""  # VoBox: relay this spool; JobAgent: talk through it; "": TCP
    spool_watch: str = "auto"  # "auto" (inotify + scan), "inotify", "poll" (scan only)
    spool_poll: float = 0.1  # seconds between scans (NFS: what other hosts wrote)
    spool_max_files: int = 256  # unanswered requests per connection; unread events
    spool_stale: float = 6 * 3600.0  # a connection silent this long is removed
    spool_fsync: bool = True  # fsync each file before its rename
    slurm_partition: str = ""
    slurm_options: list[str] = []  # more sbatch options, e.g. ["--time=02:00:00"]
    slurm_conf: str = ""  # SLURM_CONF for sbatch/squeue/scancel (default: Slurm's own)
    batch_job_name: str = "jalien-agent"  # our agents' job name in the batch system
    # an ARC CE (batch = "arc", docs/site.md): its REST endpoint, https://host:443/arex
    arc_ce: str = ""
    arc_xrsl: list[str] = []  # more xRSL relations, e.g. ["(queue=alice)", "(walltime=1440)"]
    arc_proxy: str = ""  # a proxy the site keeps renewed; "": made from vobox_cert, renewed
    arc_proxy_hours: float = 24.0  # lifetime of the proxies the VoBox makes (and delegates)
    jobagent_env: list[str] = []  # more KEY=VALUE for the agents (JALIEN_MONITOR_INTERVAL=10)
    # jobs: central's watchdog for silent JobAgents (jalien.jobs.watchdog), in seconds
    job_heartbeat_timeout: float = 600.0  # active job without heartbeat -> ZOMBIE
    job_zombie_timeout: float = 600.0  # ZOMBIE this much longer -> WAITING again or EXPIRED
    job_max_resubmits: int = 1  # times a lost job is put back to WAITING by the watchdog
    job_watchdog_interval: float = 60.0
    # the catalogue's optimizers (docs/optimizers.md): GUID tables switched by size, LFN
    # tables' growth alarms; intervals in seconds (optimiserLogs -f changes them live)
    guid_table_max_rows: int = 50_000_000  # the newest GUID table past this: a new one
    lfn_table_max_rows: int = 50_000_000  # an LFN table past this: an alarm
    optimizer_guid_interval: float = 3600.0
    optimizer_lfn_interval: float = 3600.0
    # how often the live jobs (whose tokens work) are re-read from the task queue: what
    # another jcentral process sharing it ended is refused here after at most this long
    job_live_refresh: float = 10.0
    # the broker as a cache of the task queue (jobs.broker_feed, docs/multihost.md): new
    # WAITING jobs other processes queued are read every broker_refill seconds (0: never),
    # the whole WAITING set compared every broker_resync seconds
    broker_refill: float = 1.0
    broker_resync: float = 30.0
    # several jcentrals on a shared task queue and catalogue (docs/multicentral.md): this
    # process's name in the agent routes (""; host:pid:random, unique per run), and how
    # often it takes the pushes other centrals left for its agents and follows the
    # catalogue's change log (the bound of cache coherence); 0: neither (one process)
    central_name: str = ""
    peer_poll_interval: float = 0.5
    # the central configuration (docs/ldap.md): "files" (accounts.toml and directory.json
    # in the home: the single-machine grid) or "ldap" (OpenLDAP at ldap_uri)
    config_backend: str = "files"
    ldap_uri: str = ""  # ldap://host:389
    ldap_base: str = "o=alice,dc=cern,dc=ch"
    ldap_bind_dn: str = ""  # who writes (setCEstatus, fquota/jquota set, addSE); "": anonymous
    ldap_password_file: str = ""  # ldap_bind_dn's password, alone in a file
    ldap_timeout: float = 5.0  # seconds to connect or answer
    config_ttl: float = 300.0  # seconds the configuration is used before it is read again
    quota_usage_refresh: float = 30.0  # seconds a user's file and job usage is kept
    job_quota_interval: float = 60.0  # how often users with waiting jobs are re-checked
    # data movers (docs/datamovers.md): physical removal and transfers (mirror)
    datamovers_db: str = ""  # their queues (SQLite); default: {home}/taskqueue.db
    deletion_interval: float = 30.0  # seconds between passes of the deletion queue
    deletion_parallel: int = 16  # deletions at once (deletion_per_se on one SE)
    deletion_per_se: int = 8
    deletion_attempts: int = 10  # then FAILED, listed by listDeletions
    deletion_backoff: float = 30.0  # seconds after the first failure, doubled each time
    transfer_interval: float = 10.0  # seconds between looks at the queue when idle
    transfer_workers: int = 8  # copies at once (transfer_per_se to one destination SE)
    transfer_per_se: int = 2
    transfer_backoff: float = 10.0  # seconds after a failed attempt, doubled each time
    transfer_timeout: float = 3600.0  # seconds one copy may take
    # placement rules, SE decommissioning, dark data (docs/datamovers.md)
    lifecycle_db: str = ""  # rules, decommissions, quarantine (SQLite); {home}/lifecycle.db
    rules_interval: float = 600.0  # seconds between checks of every placement rule (0: off)
    decommission_interval: float = 10.0  # seconds between steps of running decommissions
    darkdata_interval: float = 3600.0  # seconds between crawls (one SE per crawl; 0: off)
    darkdata_grace: float = 7 * 86400.0  # seconds a dark file stays quarantined
    darkdata_workdir: str = ""  # the crawl's sorted dumps and listings; {home}/darkdata
    darkdata_sort_run: int = 500_000  # keys sorted in memory at once (bounds the crawl's RAM)
    lfn_expiry_interval: float = 60.0  # seconds between removals of expired LFNs

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(self.home))

    def path(self, value: str, default: str) -> Path:
        """A configured path, or *default* under the jalien home."""
        if value:
            return Path(os.path.expanduser(value))
        return self.home_path / default

    @property
    def host_cert_path(self) -> Path:
        return self.path(self.host_cert, "host/hostcert.pem")

    @property
    def host_key_path(self) -> Path:
        return self.path(self.host_key, "host/hostkey.pem")

    @property
    def ca_dir_path(self) -> Path:
        return self.path(self.ca_dir or os.environ.get("X509_CERT_DIR", ""), "certificates")

    @property
    def se_root_path(self) -> Path:
        return self.path(self.se_root, "se")

    @property
    def envelope_key_path(self) -> Path:
        return self.path(self.envelope_key, "envelope/envelope.pub")

    def se_url(self, port: int) -> str:
        host = self.se_host or self.listen[0]
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}/se"

    def se_xrootd_url(self, port: int) -> str:
        """The SE's root:// URL: the same files as se_url's, XRootD's ``//`` absolute path."""
        host = self.se_host or self.listen[0]
        host = f"[{host}]" if ":" in host else host
        return f"root://{host}:{port}//se"

    @property
    def accounts_path(self) -> Path:
        return self.path(self.accounts_file, "accounts.toml")

    @property
    def audit_path(self) -> Path:
        return self.path(self.audit_file, "log/audit.jsonl")


class ConfigError(Exception):
    """A config file or variable that cannot be used; the message says which and why."""


_FIELDS = {f.name: f for f in msgspec.structs.fields(Settings)}


# settings whose variable is not JALIEN_<NAME>
_ENV_NAMES = {"home": "JALIEN_STATE_DIR"}


def env_name(field: str) -> str:
    return _ENV_NAMES.get(field, ENV_PREFIX + field.upper())


def _coerce(name: str, raw: str) -> object:
    field_type = _FIELDS[name].type
    try:
        if field_type is int:
            return int(raw)
        if field_type is float:
            return float(raw)
        if field_type is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if field_type == list[str]:
            return [part.strip() for part in raw.split(",") if part.strip()]
    except ValueError:
        kind = getattr(field_type, "__name__", str(field_type))
        raise ConfigError(f"{env_name(name)}={raw!r} is not a valid {kind}") from None
    return raw


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Build Settings from the layers; *overrides* are the command-line flags."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    path = config_file or env.get("JALIEN_CONFIG")
    if path:
        try:
            with open(os.path.expanduser(path), "rb") as fh:
                values.update(tomllib.load(fh))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise ConfigError(f"config file {path}: unknown settings {', '.join(sorted(unknown))}")
    for name in _FIELDS:
        raw = env.get(env_name(name))
        if raw is not None:
            values[name] = _coerce(name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None
