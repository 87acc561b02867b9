"""The multi-host central services on loopback, started with one command (docs/multihost.md):

    python build/multihost.py start DIR [--centrals 2]    (or ./jalien.sh multihost start)
    python build/multihost.py stop DIR

start: a 3-node MariaDB Galera cluster (build/galera/start.sh DIR/galera); N jcentral
processes as N hosts, each with its own home DIR/homeI (own LMDB cache, logs, ports), the
envelope key and token CA of home0 copied to the others, central I's catalogue and task
queue on Galera node I % 3 + 1 (the catalogue registered under one name, "galera", for all);
central 0 with the embedded SE; a VoBox running fork JobAgents, given every central
(JALIEN_CENTRAL_HOSTS). Every wait is bounded; a second start of a running DIR does nothing.
What it prints (and DIR/client.env, shell-sourceable) is how a client uses it:

    set -a; . DIR/client.env; set +a; jalien-bin ls     # any central, moving on failure

stop: the VoBox, its JobAgents, the centrals (SIGTERM, then SIGKILL after 20 s), the cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GALERA = ROOT / "build" / "galera"
sys.path.insert(0, str(ROOT))  # tests.ports: the one choice of free ports
from tests.ports import free_port  # noqa: E402

CE = "JALIEN::MULTIHOST::CE"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
# a copied home starts without the first one's state (its own cache, logs, databases)
STATE = ("cache", "log", "se", "catalogue.db", "taskqueue.db", "routes.db", "lfnexpiry.db")


def jalien_bin() -> list[str]:
    """How jalien runs (JALIEN_BIN, e.g. dist/jalien-bin; else this Python's module)."""
    custom = os.environ.get("JALIEN_BIN")
    return shlex.split(custom) if custom else [sys.executable, "-m", "jalien"]


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def spawn(command: list[str], env: dict[str, str], log: Path, pid_file: Path) -> int:
    """A detached process (own session: it outlives this script), its pid kept."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    pid_file.write_text(str(proc.pid))
    return proc.pid


def wait_for(log: Path, text: str, pid_file: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while text not in (said := log.read_text(errors="replace")):
        if not alive(pid_file) or "could not start" in said:
            raise SystemExit(f"{what} exited; its log:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: no '{text}' within {START_TIMEOUT:.0f} s ({log})")
        time.sleep(0.1)


def create_databases(port: int, names: list[str]) -> None:
    statements = ";".join(f"CREATE DATABASE IF NOT EXISTS {n}" for n in names)
    subprocess.run(
        ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-uroot", "-e", statements],
        check=True, timeout=60,
    )  # fmt: skip


def setup_homes(root: Path, n: int) -> None:
    first = root / "home0"
    if not (first / "certificates").exists():
        done = subprocess.run(
            [*jalien_bin(), "setup", "--home", str(first), "--globus-dir", str(root / "globus"),
             "--no-password", "--login", "jdoe"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode:
            raise SystemExit(f"jalien-bin setup failed:\n{done.stderr}")
        from jalien.storage.envelope import EnvelopeSigner

        EnvelopeSigner.load_or_create(first / "envelope")  # one key for every central
    for i in range(1, n):
        home = root / f"home{i}"
        if home.exists():
            continue
        shutil.copytree(first, home)
        for name in STATE:
            with contextlib.suppress(FileNotFoundError):
                (shutil.rmtree if (home / name).is_dir() else os.unlink)(home / name)


def start(root: Path, n: int, vobox: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(GALERA / "start.sh"), str(root / "galera")], check=True)
    cluster = read_env(root / "galera" / "cluster.env")
    ports_file = root / "multihost.env"
    if ports_file.exists():
        ports = read_env(ports_file)
    else:
        ports = {}
        for i in range(n):
            ports[f"BINARY_{i}"], ports[f"WS_{i}"] = str(free_port()), str(free_port())
        ports["SE_0"] = str(free_port())
        ports["CENTRALS"] = str(n)
        ports_file.write_text("".join(f"{k}={v}\n" for k, v in ports.items()))
    n = int(ports["CENTRALS"])
    create_databases(int(cluster["PORT_1"]), ["jalien_catalogue", "jalien_taskqueue"])
    setup_homes(root, n)
    endpoints = ",".join(f"127.0.0.1:{ports[f'BINARY_{i}']}" for i in range(n))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
    for i in range(n):
        pid_file = root / f"jcentral{i}.pid"
        if alive(pid_file):
            continue
        node_port = cluster[f"PORT_{i % 3 + 1}"]  # each host on its own Galera node
        dsn = f"mysql://root:@127.0.0.1:{node_port}"
        config = root / f"jalien{i}.toml"
        config.write_text(
            'catalogue_backend = "mariadb"\ntaskqueue_backend = "mariadb"\n'
            f"[catalogue_mariadb]\nhosts = {json.dumps([dsn + '/jalien_catalogue'])}\n"
            'names = ["galera"]\n'
            'prefixes = {"/alice/sim/" = 0}\n'  # sharded: a second LFN table on the one host
            f'[taskqueue_mariadb]\ndsn = "{dsn}/jalien_taskqueue"\n'
        )
        env = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "JALIEN_CONFIG": str(config),
            "JALIEN_LISTEN": "127.0.0.1",
            "JALIEN_CACHE_HTTP_PORT": "-1",
            "JALIEN_WORKERS": "1",  # one process per host: loopback hosts share two cores
        }
        if i == 0:
            env.update(JALIEN_EMBEDDED_SE="1", JALIEN_SE_PORT=ports["SE_0"])
        log = root / f"jcentral{i}.log"
        spawn(
            [*jalien_bin(), "--role", "jcentral", "--home", str(root / f"home{i}"),
             "--ws-port", ports[f"WS_{i}"], "--binary-port", ports[f"BINARY_{i}"]],
            env, log, pid_file,
        )  # fmt: skip
        wait_for(log, "jcentral ready", pid_file, f"jcentral {i}")
    if vobox and not alive(root / "vobox.pid"):
        for name in ("tmpdir", "wn"):
            (root / name).mkdir(exist_ok=True)
        env = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(root / "tmpdir"),
            "JALIEN_CENTRAL_HOSTS": endpoints,
            "JALIEN_VOBOX_DIR": str(root / "vobox"),
            "JALIEN_CE": CE,
            "JALIEN_BATCH": "fork",
            "JALIEN_SUBMIT_INTERVAL": "2",
            "JALIEN_WORKDIR": str(root / "wn"),
        }
        log = root / "vobox.log"
        spawn(
            [*jalien_bin(), "--role", "vobox", "--home", str(root / "home0"),
             "--central", f"127.0.0.1:{ports['BINARY_0']}", "--listen", "127.0.0.1"],
            env, log, root / "vobox.pid",
        )  # fmt: skip
        wait_for(log, "vobox ready", root / "vobox.pid", "the VoBox")
    globus = root / "globus"
    client = {
        "JALIEN_CENTRAL_HOSTS": endpoints,
        "X509_USER_CERT": str(globus / "usercert.pem"),
        "X509_USER_KEY": str(globus / "userkey.pem"),
        "X509_CERT_DIR": str(root / "home0" / "certificates"),
        "JALIEN_STATE_DIR": str(root / "home0"),
    }
    (root / "client.env").write_text("".join(f"{k}={v}\n" for k, v in client.items()))
    print(f"multihost: {n} jcentrals at {endpoints} on Galera {cluster['ADDRESSES']}")
    print(f"  logs: {root}/jcentral*.log, vobox.log; a client: set -a; . {root}/client.env; set +a")


def end(pid_file: Path, what: str) -> None:
    if not alive(pid_file):
        pid_file.unlink(missing_ok=True)
        return
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(pid_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid_file):
        print(f"multihost: {what} did not stop within {STOP_TIMEOUT:.0f} s: killed", flush=True)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def end_agents(root: Path) -> None:
    """Fork JobAgents outlive their VoBox (as batch jobs do): the ones working under DIR."""
    import psutil

    for proc in psutil.process_iter(["environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if str(root) in (proc.info["environ"] or {}).get("JALIEN_WORKDIR", ""):
                proc.kill()


def stop(root: Path) -> None:
    end(root / "vobox.pid", "the VoBox")
    end_agents(root)
    for pid_file in sorted(root.glob("jcentral*.pid")):
        end(pid_file, pid_file.stem)
    if (root / "galera").exists():
        subprocess.run([str(GALERA / "stop.sh"), str(root / "galera")], check=False)
    print("multihost: stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path, help="where the cluster, homes and logs live")
    parser.add_argument("--centrals", type=int, default=2, help="jcentral processes (hosts)")
    parser.add_argument("--no-vobox", action="store_true", help="no VoBox and JobAgents")
    args = parser.parse_args()
    if not 1 <= args.centrals <= 9:
        parser.error("--centrals must be in 1..9")
    root = args.dir.resolve()
    if args.action == "stop":
        stop(root)
        return 0
    try:
        start(root, args.centrals, not args.no_vobox)
    except subprocess.CalledProcessError as exc:
        print(f"multihost: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
