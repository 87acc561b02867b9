"""Where a client finds its server and its credentials, in the seed deck's order.

Servers, tried in turn (``candidates``):

1. the environment: ``JALIEN_HOST`` + ``JALIEN_PORT`` (the binary channel), as a JobAgent
   gives its payload (``JALIEN_WSPORT`` is the WebSocket port, for alien.py and ROOT);
2. the token file of a running jBox: ``$TMPDIR/jclient_token_<uid>`` (or ROOT's older name
   ``jalien_token_<uid>``), only while the process it names is alive and ours;
3. the configured central services (``Settings.central_hosts``, several endpoints as
   behind a DNS alias, tried in a random order; else ``central_host``, ``binary_port``).

Credentials, the first usable one (``find_credentials``):

1. ``JALIEN_TOKEN_CERT`` + ``JALIEN_TOKEN_KEY`` (paths, or the PEM text itself, as a JobAgent
   passes them);
2. the token certificate in ``$TMPDIR/tokencert_<uid>.pem`` + ``tokenkey_<uid>.pem`` (where
   jBox and alien.py put it) while it has more than a minute left;
3. an RFC 3820 proxy (``X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``), same rule;
4. ``~/.globus/usercert.pem`` + ``userkey.pem`` (``X509_USER_CERT``/``X509_USER_KEY``).

CA certificates: ``X509_CERT_DIR``, else the jalien home's ``certificates`` (what ``jalien-bin
setup`` makes), else ``/etc/grid-security/certificates``.

The token file format is ``KEY=VALUE`` lines (shell-sourceable) with both key sets JAliEn's
readers know: ``JALIEN_HOST``... for alien.py, ``Host``, ``Port``... for older JBox/ROOT
readers. ``Passwd`` is written for readers that insist on it; jalien authenticates with TLS
client certificates and never reads it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import secrets
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography import x509

from jalien.auth.certs import utcnow
from jalien.auth.errors import AuthError
from jalien.auth.files import write_file
from jalien.auth.tls import client_context, context_from_pem
from jalien.config import ConfigError, Settings

TOKEN_FILE_NAMES = ("jclient_token_{uid}", "jalien_token_{uid}")  # alien.py's, then ROOT's
MIN_LEFT = dt.timedelta(seconds=60)  # a credential closer to its end than this is skipped
SYSTEM_CA_DIR = Path("/etc/grid-security/certificates")


def tmpdir(env: Mapping[str, str] | None = None) -> Path:
    """``$TMPDIR`` as alien.py resolves it (Python's tempfile rules)."""
    env = os.environ if env is None else env
    value = env.get("TMPDIR")
    return Path(value) if value else Path(tempfile.gettempdir())


def token_file_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    uid = os.getuid()
    return [tmpdir(env) / name.format(uid=uid) for name in TOKEN_FILE_NAMES]


def token_cert_paths(env: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """Where the token certificate and key live (alien.py's defaults and overrides)."""
    env = os.environ if env is None else env
    uid, base = os.getuid(), tmpdir(env)
    cert = env.get("JALIEN_TOKEN_CERT", "")
    key = env.get("JALIEN_TOKEN_KEY", "")
    return (
        Path(cert) if cert and not _is_pem(cert) else base / f"tokencert_{uid}.pem",
        Path(key) if key and not _is_pem(key) else base / f"tokenkey_{uid}.pem",
    )


def proxy_path(env: Mapping[str, str] | None = None) -> Path:
    """The Globus proxy file: ``X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``."""
    env = os.environ if env is None else env
    return Path(env.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}")


def ca_dir(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("X509_CERT_DIR"):
        return Path(env["X509_CERT_DIR"])
    own = settings.path(settings.ca_dir, "certificates")
    return own if own.is_dir() or not SYSTEM_CA_DIR.is_dir() else SYSTEM_CA_DIR


def _is_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


# -- the token file


def token_file_text(
    *, host: str, port: int, ws_port: int, pid: int, user: str, home: str, debug: int = 0
) -> str:
    values = {
        "JALIEN_HOST": host,
        "JALIEN_PORT": port,
        "JALIEN_WSPORT": ws_port,
        "JALIEN_PID": pid,
        "JALIEN_USER": user,
        "JALIEN_HOME": home,
        "Host": host,
        "Port": port,
        "WSPort": ws_port,
        "User": user,
        "Home": home,
        "Passwd": secrets.token_hex(16),
        "Debug": debug,
        "PID": pid,
    }
    for name, value in values.items():
        if any(c.isspace() or c in "'\"$`\\;" for c in str(value)):
            raise AuthError(f"token file value {name}={value!r} cannot be written unquoted")
    return "".join(f"{name}={value}\n" for name, value in values.items())


def write_token_files(text: str, env: Mapping[str, str] | None = None) -> list[Path]:
    """Write the token file under both names, mode 0600, replacing old ones atomically."""
    paths = token_file_paths(env)
    for path in paths:
        write_file(path, text.encode(), 0o600, overwrite=True)
    return paths


def read_token_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as alien.py reads them (``#`` comments, optional quotes).

    In a shared ``/tmp`` anybody can plant a file under our name pointing at their own
    server; a file that is not ours, or that others may write, is ignored.
    """
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return values
            text = fh.read()
    except OSError:
        return values
    for line in text.splitlines():
        line = line.partition("#")[0]
        name, sep, value = line.partition("=")
        if sep and name.strip():
            values[name.strip()] = value.strip().strip('"').strip("'")
    return values


def remove_token_files(pid: int, env: Mapping[str, str] | None = None) -> None:
    """Remove the token files that name *pid* (never a newer jBox's)."""
    for path in token_file_paths(env):
        values = read_token_file(path)
        if values.get("JALIEN_PID", values.get("PID")) == str(pid):
            with contextlib.suppress(OSError):
                path.unlink()


def live_owner(values: Mapping[str, str]) -> int | None:
    """The PID a token file names, if that process is alive and belongs to this user."""
    try:
        pid = int(values.get("JALIEN_PID") or values.get("PID") or "")
        if pid <= 0:
            return None
        process = psutil.Process(pid)
        if process.uids().real != os.getuid() or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (ValueError, psutil.Error):
        return None
    return pid


# -- servers


@dataclass
class Endpoint:
    host: str
    port: int  # the binary channel
    ws_port: int = 0
    source: str = "central"  # env, jbox or central
    where: str = ""  # what told us (a variable, a file)


def _port(value: str | None) -> int:
    try:
        port = int(value or "")
    except ValueError:
        return 0
    return port if 0 < port < 65536 else 0


def candidates(settings: Settings, env: Mapping[str, str] | None = None) -> list[Endpoint]:
    """The servers to try, in order; notes on skipped sources go in ``Endpoint.where``."""
    env = os.environ if env is None else env
    found: list[Endpoint] = []
    host, port = env.get("JALIEN_HOST", ""), _port(env.get("JALIEN_PORT"))
    if host and port:
        ws_port = _port(env.get("JALIEN_WSPORT"))
        found.append(Endpoint(host, port, ws_port, "env", "JALIEN_HOST/JALIEN_PORT"))
    for path in token_file_paths(env):
        values = read_token_file(path)
        port = _port(values.get("JALIEN_PORT") or values.get("Port"))
        if values and port and live_owner(values) is not None:
            host = values.get("JALIEN_HOST") or values.get("Host") or "127.0.0.1"
            ws_port = _port(values.get("JALIEN_WSPORT") or values.get("WSPort"))
            found.append(Endpoint(host, port, ws_port, "jbox", str(path)))
            break
    centrals = central_endpoints(settings)
    random.shuffle(centrals)  # a DNS alias's round robin: the load spreads over them
    for host, port in centrals:
        found.append(Endpoint(host, port, settings.ws_port, "central", ""))
    return found


def parse_endpoint(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port);
    ValueError for a bad port."""
    value = value.strip()
    if value.count(":") > 1 and not value.startswith("["):  # a bare IPv6 address
        return value, default_port
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:  # no port, or a bare [v6] address
        return value.strip("[]"), default_port
    number = _port(port)
    if not number:
        raise ValueError(f"{value}: the port must be a number in 1-65535")
    return host.strip("[]"), number


def central_endpoints(settings: Settings) -> list[tuple[str, int]]:
    """Where central services answer: ``central_hosts`` (several, as behind a DNS alias),
    else ``central_host``:``binary_port``; ConfigError for a bad entry."""
    if settings.central_hosts:
        try:
            return [parse_endpoint(v, settings.binary_port) for v in settings.central_hosts]
        except ValueError as exc:
            raise ConfigError(f"central_hosts: {exc}") from None
    return [(settings.central_host, settings.binary_port)]


def stale_token_file(env: Mapping[str, str] | None = None) -> Path | None:
    """A token file whose jBox is gone (for a clearer error message)."""
    for path in token_file_paths(env):
        values = read_token_file(path)
        if values and live_owner(values) is None:
            return path
    return None


# -- credentials


@dataclass
class Credentials:
    kind: str  # env-token, token, proxy or usercert
    cert: Path | None = None
    key: Path | None = None
    cert_pem: bytes = b""
    key_pem: bytes = b""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = "environment" if self.cert is None else str(self.cert)
        return f"{self.kind} ({where})"

    def needs_password(self) -> bool:
        if self.key is None:
            return False
        try:
            head = self.key.read_bytes()
        except OSError:
            return False
        return b"ENCRYPTED" in head

    def context(self, ca_directory: Path, password: bytes | None = None) -> ssl.SSLContext:
        if self.cert is None:
            return context_from_pem("client", self.cert_pem, self.key_pem, ca_directory)
        assert self.key is not None
        return client_context(self.cert, self.key, ca_directory, password)


def _time_left(data: bytes) -> dt.timedelta | None:
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError):
        return None
    return cert.not_valid_after_utc - utcnow()


def _usable(path: Path, notes: list[str], what: str) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    left = _time_left(data)
    if left is None:
        notes.append(f"{what} {path} is not a certificate")
        return False
    if left < MIN_LEFT:
        notes.append(f"{what} {path} has expired")
        return False
    return True


def find_credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """The first usable credential (see the module docstring); AuthError when none is."""
    return next(credentials_in_order(env))


def credentials_in_order(env: Mapping[str, str] | None = None) -> Iterator[Credentials]:
    """Every usable credential, best first, looked at only when asked for: a client takes
    the next one when a server refuses the first (a token file left in $TMPDIR by another
    grid, say). AuthError, with what was wrong with each, when there is none (left)."""
    env = os.environ if env is None else env
    notes: list[str] = []
    cert_env, key_env = env.get("JALIEN_TOKEN_CERT", ""), env.get("JALIEN_TOKEN_KEY", "")
    if _is_pem(cert_env) and _is_pem(key_env):
        left = _time_left(cert_env.encode())
        if left is not None and left >= MIN_LEFT:
            yield Credentials("env-token", cert_pem=cert_env.encode(), key_pem=key_env.encode())
        else:
            notes.append("the token in JALIEN_TOKEN_CERT has expired or is unreadable")
    token_cert, token_key = token_cert_paths(env)
    if token_key.exists() and _usable(token_cert, notes, "token certificate"):
        yield Credentials("token", token_cert, token_key, notes=notes)
    proxy = proxy_path(env)
    if _usable(proxy, notes, "proxy"):
        yield Credentials("proxy", proxy, proxy, notes=notes)
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    cert = Path(env.get("X509_USER_CERT") or home / ".globus/usercert.pem")
    key = Path(env.get("X509_USER_KEY") or home / ".globus/userkey.pem")
    if cert.exists() and key.exists():
        yield Credentials("usercert", cert, key, notes=notes)
        return
    notes.append(f"no user certificate {cert} and key {key}")
    raise AuthError("no credentials found: " + "; ".join(notes))


def running_jbox(env: Mapping[str, str] | None = None) -> int | None:
    """The PID of a live jBox of this user named by a token file, if any (not this one)."""
    for path in token_file_paths(env):
        pid = live_owner(read_token_file(path))
        if pid is None or pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if "jbox" in " ".join(psutil.Process(pid).cmdline()):
                return pid
    return None
