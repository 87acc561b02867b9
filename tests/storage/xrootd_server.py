"""A real XRootD server (Debian's xrootd-server) for the storage tests and bench_cp.

Started on a free port, answering loopback only (``xrd.allow host localhost``), as an
unprivileged user (xrootd refuses to run as root): when we are root, the system user
``jalien-xrootd`` (made with ``useradd -r`` on first use, else ``nobody``) owns its data
directory. The configuration is written here: the data directory as ``oss.localroot``, md5
checksums (so that an upload is verified by the SE) and third-party copy through xrdcp.

Debian's xrootd has no ALICE TokenAuthz plugin, so it ignores the ``authz`` envelope;
the embedded SE is the one that enforces envelopes.

Without ``xrootd``/``xrdcp`` the tests that need it are skipped with a reason outside CI and
fail in CI (``CI`` set), so that CI never passes by not running them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.ports import free_port

SERVICE_USER = "jalien-xrootd"
START_TIMEOUT = 30.0


class XRootDUnavailable(RuntimeError):
    """The XRootD server or client is missing or would not start."""


def unavailable(reason: str) -> None:
    """Skip loudly outside CI; fail in CI."""
    import pytest

    message = f"XRootD tests cannot run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: XRootD SEs must be tested)")
    pytest.skip("SKIPPED LOUDLY: " + message + " (set CI=true to make this an error)")


def binaries() -> tuple[str, str]:
    """(xrootd, xrdcp) paths; XRootDUnavailable when one is missing."""
    server = shutil.which("xrootd") or (
        "/usr/bin/xrootd" if Path("/usr/bin/xrootd").exists() else ""
    )
    client = shutil.which("xrdcp") or ""
    if not server or not client:
        raise XRootDUnavailable("install xrootd-server and xrootd-client (apt)")
    return server, client


def _service_account() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as; None when we are not root."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    if shutil.which("useradd"):
        subprocess.run(
            ["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(SERVICE_USER)
    return pwd.getpwnam("nobody")


@dataclass
class XRootDServer:
    port: int
    data: Path  # oss.localroot: PFN paths are below it
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The SE URL to register (``addSE NAME root://127.0.0.1:PORT/``)."""
        return f"root://127.0.0.1:{self.port}/"

    def path_of(self, pfn: str) -> Path:
        """Where a replica's bytes are on disk."""
        return self.data / urlsplit(pfn).path.lstrip("/")

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.rglob("*.log")))

    def start(self) -> None:
        server, client = binaries()
        account = _service_account()
        config = self.workdir / "xrootd.cfg"
        config.write_text(
            f"xrd.port {self.port}\n"
            "xrd.allow host localhost\n"
            "xrd.network nodnr\n"
            "all.export /\n"
            f"oss.localroot {self.data}\n"
            f"all.adminpath {self.workdir / 'admin'}\n"
            f"all.pidpath {self.workdir / 'admin'}\n"
            "xrootd.chksum md5\n"
            f"ofs.tpc autorm xfr 8 pgm {client} --server\n"
        )
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - closed with the process
        kw: dict = {}
        if account is not None:
            kw = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(
            [server, "-c", str(config), "-l", str(self.workdir / "xrootd.log"), "-I", "v4"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)}, **kw,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise XRootDUnavailable(
                    f"xrootd exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise XRootDUnavailable(f"xrootd did not listen on {self.port}:\n{self.log_text()}")

    def stop(self, kill: bool = False) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_xrootd(name: str = "se") -> XRootDServer:
    """A started server with an empty data directory (``close()`` stops it, removes it all).

    The directory is made under the system temp dir, not pytest's (which is private to
    root): the server's account must reach it."""
    binaries()
    account = _service_account()
    workdir = Path(tempfile.mkdtemp(prefix=f"jalien-xrootd-{name}-", dir="/tmp"))
    workdir.chmod(0o755)
    data = workdir / "data"
    for sub in (data, workdir / "admin"):
        sub.mkdir()
    if account is not None:
        for path in (workdir, data, workdir / "admin"):
            os.chown(path, account.pw_uid, account.pw_gid)
    server = XRootDServer(free_port(), data, workdir)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server
