"""An ARC CE on loopback, private to one test (or started by hand: ``build/arc/start.sh DIR``
/ ``build/arc/stop.sh DIR``): NorduGrid A-REX (Debian ``nordugrid-arc-arex`` 6.x) with its
``fork`` back end, reached over its REST interface by the ARC client tools
(``nordugrid-arc-client``: arcsub, arcstat, arcget, arckill, arcclean).

Debian's binaries are used as they are; the configuration is ours, under *root*: an
``arc.conf`` (host certificate and CA directory given by the caller, one authorisation
group of the client DNs we accept, mapped to a local account; ``lrms = fork``; control,
session and temporary directories below *root*; a quick ``wakeupperiod``), expanded by
ARC's own ``arcconfig-parser`` into the runtime configuration A-REX reads. The ``arched``
service configuration is written here too, from the template of Debian's
``arc-arex-ws-start`` with two changes: it listens on 127.0.0.1 only (the packaged script
listens on every interface and cannot be told otherwise), and one process runs both the
web service and the grid manager (the packaged scripts start two). No systemd, nothing
outside *root*: ``arched -f`` runs in the foreground as our child.

A-REX, started as root, refuses to run jobs as root unless the mapping names it; the test
CE maps its clients to the user running the tests (root here), so that the JobAgents it
starts can run this checkout's Python (which lives in root's home).

Tests needing it call ``arc_or_skip()``: without the binaries they are skipped with the
reason outside CI and fail in CI (``CI`` set), as the Slurm tests do.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ports import free_port

SBIN = "/usr/sbin:/usr/lib/arc"
SERVER = ("arched", "arcconfig-parser")
CLIENT = ("arcsub", "arcstat", "arcget", "arckill", "arcclean")
START_TRIES = 300  # x 0.1 s
STOP_WAIT = 20.0  # seconds A-REX gets to stop its threads after SIGTERM
PID_NAME = "arched.pid"

# RFC 7919's ffdhe2048 group: A-REX's TLS wants DH parameters; Debian's start script makes
# 4096-bit ones in the background (minutes of CPU), a fixed well-known group is enough here
FFDHE2048 = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""

ARC_CONF = """\
[common]
hostname = localhost
x509_host_key = {host_key}
x509_host_cert = {host_cert}
x509_cert_dir = {ca_dir}

[authgroup:clients]
{subjects}

[mapping]
map_to_user = clients {user}

[lrms]
lrms = fork

[arex]
controldir = {root}/control
sessiondir = {root}/session
pidfile = {root}/arex.pid
logfile = {root}/arex.log
loglevel = 3
tmpdir = {root}/tmp
shared_filesystem = yes
wakeupperiod = 2
defaultttl = 600 600

[arex/ws]
wsurl = https://localhost:{port}/arex
logfile = {root}/ws.log

[arex/ws/jobs]
allowaccess = clients

[infosys]
logfile = {root}/infoprovider.log

[infosys/glue2]

[infosys/cluster]

[queue:fork]
"""

ARCHED_XML = """\
<?xml version="1.0"?>
<ArcConfig
  xmlns="http://www.nordugrid.org/schemas/ArcConfig/2007"
  xmlns:tcp="http://www.nordugrid.org/schemas/ArcMCCTCP/2007"
  xmlns:arex="http://www.nordugrid.org/schemas/a-rex/Config">
  <Server>
    <Logger><File>{root}/arex.log</File><Level>DEBUG</Level></Logger>
    <Watchdog>false</Watchdog>
  </Server>
  <ModuleManager><Path>/usr/lib/arc/</Path></ModuleManager>
  <Plugins><Name>mcctcp</Name></Plugins>
  <Plugins><Name>mcctls</Name></Plugins>
  <Plugins><Name>mcchttp</Name></Plugins>
  <Plugins><Name>mccsoap</Name></Plugins>
  <Plugins><Name>arex</Name></Plugins>
  <Plugins><Name>identitymap</Name></Plugins>
  <Plugins><Name>arcshc</Name></Plugins>
  <Plugins><Name>arcshclegacy</Name></Plugins>
  <Chain>
    <Component name="tcp.service" id="tcp">
      <next id="tls"/>
      <tcp:Listen><tcp:Interface>127.0.0.1</tcp:Interface><tcp:Port>{port}</tcp:Port></tcp:Listen>
    </Component>
    <Component name="tls.service" id="tls">
      <next id="http"/>
      <KeyPath>{host_key}</KeyPath>
      <CertificatePath>{host_cert}</CertificatePath>
      <CACertificatesDir PolicyGlobus="true">{ca_dir}</CACertificatesDir>
      <VOMSProcessing>standard</VOMSProcessing>
      <ClientAuthn>false</ClientAuthn>
      <DHParamFile>{root}/control/dhparam.pem</DHParamFile>
    </Component>
    <Component name="http.service" id="http">
      <next id="soap">POST</next>
      <next id="plexer"/>
      <SecHandler name="arclegacy.handler" event="incoming">
        <ConfigFile>{runtime}</ConfigFile>
      </SecHandler>
    </Component>
    <Component name="soap.service" id="soap">
      <next id="plexer"/>
      <ContinueNonSOAP>true</ContinueNonSOAP>
    </Component>
    <Plexer name="plexer.service" id="plexer">
      <next id="a-rex">^/arex</next>
    </Plexer>
    <Service name="a-rex" id="a-rex">
      <SecHandler name="arclegacy.map" event="incoming">
        <ConfigBlock><ConfigFile>{runtime}</ConfigFile><BlockName>mapping</BlockName></ConfigBlock>
      </SecHandler>
      <arex:endpoint>https://localhost:{port}/arex</arex:endpoint>
      <arex:gmconfig>{runtime}</arex:gmconfig>
    </Service>
  </Chain>
</ArcConfig>
"""


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def missing() -> str:
    """Why this machine cannot run the test CE ('' when it can)."""
    absent = [name for name in (*SERVER, *CLIENT) if _which(name) is None]
    if absent:
        return (
            f"ARC binaries missing: {', '.join(absent)} (apt install nordugrid-arc-arex "
            "nordugrid-arc-client nordugrid-arc-plugins-needed nordugrid-arc-plugins-arcrest)"
        )
    return ""


def arc_or_skip() -> None:
    reason = missing()
    if not reason:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the ARC test CE: {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def _local_account() -> str:
    """The account jobs run as: A-REX never runs a job as root (its control files owned by
    uid 0 are ignored), so as root the clients are mapped to ``nobody``; otherwise to the
    user running the CE (A-REX cannot switch users then)."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return f"nobody:{grp.getgrgid(nobody.pw_gid).gr_name}"
    return f"{getpass.getuser()}:{grp.getgrgid(os.getgid()).gr_name}"


def public_dir(prefix: str = "jalien-arc-") -> Path:
    """A new directory the CE's unprivileged account can reach (pytest's temporary
    directories are private to us): below /tmp, mode 0755; the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


def _reachable(path: Path) -> bool:
    """Whether every directory down to *path* lets others through."""
    return all(os.stat(p).st_mode & 0o001 for p in [*reversed(path.parents), path])


def agent_python(repo: Path) -> tuple[list[str], dict[str, str]] | None:
    """A command line running this checkout's ``jalien`` as the CE's account, and the
    environment it needs; None when there is none. This Python may live where that account
    cannot go (pyenv in root's home): then the system's Python of the same version, with
    our virtual environment's site-packages and the sources on PYTHONPATH, pure-Python
    modules (no editable-install rebuild, which writes to the build directory)."""
    purelib = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{repo}:{purelib}", "JALIEN_NO_EXTENSIONS": "1"}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    user = "nobody" if os.geteuid() == 0 else None
    for python in (sys.executable, f"/usr/bin/python{version}"):
        try:
            done = subprocess.run(
                [python, "-c", "import jalien.cli.main"],
                env={"PATH": "/usr/bin:/bin", "HOME": "/", **env},
                user=user,
                cwd="/",
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return [python, "-m", "jalien"], env
    return None


@dataclass
class ArcCE:
    """A-REX under *root*, trusting *ca_dir*, with *host_cert*/*host_key* (for localhost),
    accepting the clients whose certificate subjects are *subjects* (proxies of them)."""

    root: Path
    ca_dir: Path
    host_cert: Path
    host_key: Path
    subjects: Sequence[str]
    port: int = 0
    proc: subprocess.Popen | None = None
    started: float = field(default=0.0)

    @property
    def url(self) -> str:
        """The endpoint clients give ``arcsub -C``."""
        return f"https://localhost:{self.port}/arex"

    @property
    def conf(self) -> Path:
        return self.root / "arc.conf"

    def start(self) -> ArcCE:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        if not _reachable(root):  # the jobs' account must reach its session directory
            raise RuntimeError(f"{root}: a directory above it is closed to other users")
        for sub in ("control", "session"):
            (root / sub).mkdir(exist_ok=True, mode=0o755)
        (root / "tmp").mkdir(exist_ok=True)
        os.chmod(root / "tmp", 0o1777)  # A-REX checks it is a sticky, world-writable dir
        (root / "control" / "dhparam.pem").write_text(FFDHE2048)
        self.port = self.port or free_port()
        subjects = "\n".join(f"subject = {dn}" for dn in self.subjects)
        values = {
            "root": root,
            "port": self.port,
            "ca_dir": self.ca_dir,
            "host_cert": self.host_cert,
            "host_key": self.host_key,
            "subjects": subjects,
            "user": _local_account(),
        }
        self.conf.write_text(ARC_CONF.format(**values))
        runtime = root / "arc.runtime.conf"
        parser = _which("arcconfig-parser") or "arcconfig-parser"
        done = subprocess.run(
            [parser, "--config", str(self.conf), "--runconfig", str(runtime), "--save"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"arcconfig-parser failed: {done.stderr or done.stdout}")
        xml = root / "arched.xml"
        xml.write_text(ARCHED_XML.format(**values, runtime=runtime))
        out = open(root / "arched.out", "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "TMPDIR": str(root / "tmp"), "ARC_LOCATION": "/usr"}
        env["ARC_CONFIG"] = str(self.conf)
        self.proc = subprocess.Popen(
            [_which("arched") or "arched", "-f", "-c", str(xml)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            start_new_session=True,
        )
        out.close()
        self.started = time.monotonic()
        (root / PID_NAME).write_text(f"{self.proc.pid}\n")  # arched -f writes none
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        for _ in range(START_TRIES):
            assert self.proc is not None
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"arched exited ({code}):\n{self.logs()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ARC test CE: gave up waiting for port {self.port}:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("arched.out", "arex.log", "ws.log", "infoprovider.log"):
            path = self.root / name
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        self._sweep()

    def _sweep(self) -> None:
        """Kill what A-REX's fork back end left running below our session directory (jobs
        are their own sessions: A-REX does not take them down with it)."""
        session = f"{self.root}/session/"
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if (cwd + "/").startswith(session):
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGKILL)


def make_ce(root: Path, ca_dir: Path, host_cert: Path, host_key: Path, subjects: Sequence[str]):
    return ArcCE(root, ca_dir, host_cert, host_key, list(subjects))


def main(argv: list[str]) -> int:
    """``start DIR`` (a test PKI of its own under DIR/pki; prints the endpoint and the
    client's environment; A-REX stays up) or ``stop DIR``."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: arc_ce.py start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "stop":
        with contextlib.suppress(OSError, ValueError):
            pid = int((root / "ce" / PID_NAME).read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            for _ in range(int(STOP_WAIT * 10)):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        ArcCE(root / "ce", root, root, root, [])._sweep()
        return 0
    reason = missing()
    if reason:
        print(f"cannot start the ARC test CE: {reason}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from jalien.auth.certs import load_cert, load_key
    from jalien.auth.proxy import make_proxy, write_proxy_file
    from tests.gridpki import make_grid_pki

    pki = make_grid_pki(root / "pki")
    client = pki.users["vobox"]
    proxy, proxy_key = make_proxy(load_cert(client.cert), load_key(client.key), hours=12)
    write_proxy_file(root / "proxy.pem", proxy, proxy_key, [load_cert(client.cert)])
    ce = ArcCE(root / "ce", pki.ca_dir, pki.host_cert, pki.host_key, [client.dn])
    try:
        ce.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"cannot start the ARC test CE: {exc}", file=sys.stderr)
        return 1
    print(f"# A-REX at {ce.url} (pid {ce.proc.pid if ce.proc else '?'})")
    print(f"export X509_USER_PROXY={root}/proxy.pem X509_CERT_DIR={pki.ca_dir}")
    print(
        f"# arcsub -C {ce.url} -T arcrest -Q NONE -j {root}/jobs.dat -e '&(executable=/bin/true)'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
