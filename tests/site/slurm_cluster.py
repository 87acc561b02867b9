"""A one-node Slurm cluster on loopback, private to one test session (or started by hand:
``build/slurm/start.sh DIR`` / ``build/slurm/stop.sh DIR``).

Debian's packages (slurmctld, slurmd, slurm-client 22.05, munge) are used as they are;
everything else is ours, under *root*: a munge key and ``munged`` on its own socket, a
``slurm.conf`` with free ports, no cgroups (``proctrack/linuxproc``, ``task/none``), no
accounting, state and spool directories. There is no systemd: the daemons run in the
foreground as our children. slurmd must run as root (it starts jobs as their users).

Stopping cancels every job, stops the daemons, then kills whatever still carries this
cluster's ``SLURM_CONF`` in its environment (a job step slurmd left behind), so that no
process outlives the tests.

Tests needing Slurm call ``slurm_or_skip()``: without the binaries (or not as root) they are
skipped with the reason outside CI and fail in CI (``CI`` set), as the MariaDB tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ports import free_port

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
START_TRIES = 600  # x 0.1 s


def missing() -> str:
    """Why this machine cannot run the test cluster ('' when it can)."""
    absent = [name for name in BINARIES if shutil.which(name) is None]
    if absent:
        return (
            f"Slurm/munge binaries missing: {', '.join(absent)} "
            "(apt install slurmctld slurmd munge slurm-client)"
        )
    if os.geteuid() != 0:
        return "slurmd must run as root"
    return ""


def slurm_or_skip() -> None:
    reason = missing()
    if not reason:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the Slurm test cluster: {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


SLURM_CONF = """\
ClusterName=jalientest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=2
KillWait=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@dataclass
class SlurmCluster:
    root: Path
    partition: str = "jalien"
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What clients (sbatch, squeue, scancel) need besides the usual environment."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def _daemon(self, *argv: str, log: str) -> subprocess.Popen:
        out = open(self.root / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def start(self) -> SlurmCluster:
        root = self.root
        for sub in ("munge", "state", "spool"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        key = root / "munge" / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, timeout=60)
        os.chmod(key, 0o400)
        self._daemon(
            "munged",
            "--foreground",
            "--force",
            f"--socket={root}/munge/munge.socket",
            f"--key-file={key}",
            f"--pid-file={root}/munge/munged.pid",
            f"--seed-file={root}/munge/munged.seed",
            f"--log-file={root}/munge/munged.log",
            log="munged.out",
        )
        self._wait(lambda: (root / "munge" / "munge.socket").exists(), "munged")
        self.conf.write_text(
            SLURM_CONF.format(
                root=root,
                ctld_port=free_port(),
                slurmd_port=free_port(),
                partition=self.partition,
            )
        )
        self._daemon("slurmctld", "-D", "-c", "-f", str(self.conf), log="slurmctld.out")
        self._daemon("slurmd", "-D", "-N", "localhost", "-f", str(self.conf), log="slurmd.out")
        self._wait(self._idle, "the node to be idle")
        return self

    def _idle(self) -> bool:
        done = self.run("sinfo", "--noheader", "--format=%T", check=False)
        return done.returncode == 0 and done.stdout.strip().rstrip("*") in ("idle", "mixed")

    def _wait(self, ready, what: str) -> None:
        for _ in range(START_TRIES):
            if ready():
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}):\n{self.logs()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Slurm test cluster: gave up waiting for {what}:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("munge/munged.log", "slurmctld.log", "slurmd.log", "slurmd.out"):
            path = self.root / name
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        if any(proc.poll() is None for proc in self.procs):
            self.run("scancel", "--full", "--user=root", check=False)
            for _ in range(100):  # bounded: 10 s
                done = self.run("squeue", "--noheader", check=False)
                if done.returncode or not done.stdout.strip():
                    break
                time.sleep(0.1)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        self._sweep()

    def _sweep(self) -> None:
        """Kill what still runs with this cluster's SLURM_CONF (a stray job step)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if mark in environ.split(b"\0"):
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGKILL)


def main(argv: list[str]) -> int:
    """``start DIR`` (prints the SLURM_CONF to export; the daemons stay up) or ``stop DIR``."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: slurm_cluster.py start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    cluster = SlurmCluster(root)
    if argv[0] == "start":
        reason = missing()
        if reason:
            print(f"cannot start the Slurm test cluster: {reason}", file=sys.stderr)
            return 1
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"cannot start the Slurm test cluster: {exc}", file=sys.stderr)
            return 1
        pids = " ".join(str(p.pid) for p in cluster.procs)
        (root / "daemons.pid").write_text(pids + "\n")
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    with contextlib.suppress(OSError):
        subprocess.run(
            ["scancel", "--full", "--user=root"],
            env={**os.environ, **cluster.env},
            timeout=60,
            check=False,
            capture_output=True,
        )
    with contextlib.suppress(OSError, ValueError):
        for pid in reversed((root / "daemons.pid").read_text().split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        time.sleep(1)
    cluster._sweep()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
