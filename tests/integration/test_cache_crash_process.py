"""kill -9 of jcentral during a parallel upload, then a restart on the same shared cache:
every file that cp reported copied answers whereis, stat, ls and find as the catalogue does
(the truth: a second jcentral on the same catalogue with an empty cache of its own)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import free_port, run_setup, start_central, stop

pytestmark = pytest.mark.integration
FILES = 160  # per round, 32 in flight
KILL_AT = (40, 60, 80, 100)  # per round: files transferred when jcentral is killed


def _env(cache_dir, se_port) -> dict[str, str]:
    return {
        "JALIEN_EMBEDDED_SE": "1",
        "JALIEN_SE_NAME": "ALICE::LOCAL::SE",
        "JALIEN_SE_PORT": str(se_port),
        "JALIEN_CACHE_DIR": str(cache_dir),
        "JALIEN_CACHE_HTTP_PORT": "-1",
        "JALIEN_CACHE_COMMIT_DELAY": "0.02",  # a busy disk: the crash windows are wider
    }


class _KillAt:
    """cp's progress: kill -9 jcentral when *count* files are done (their commit answered)."""

    def __init__(self, proc, count: int) -> None:
        self.proc, self.left = proc, count

    def add(self, name: str, total: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...

    def done(self, name: str) -> None:
        self.left -= 1
        if self.left == 0:
            self.proc.send_signal(signal.SIGKILL)


async def _client(home, globus, port) -> Client:
    ctx = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    client = Client("127.0.0.1", port, ctx, reconnect=False)
    await client.connect()
    return client


def _answer(reply) -> tuple[int, object]:
    """What a command answered, in a form two servers can be compared by."""
    if reply.exitcode != 0:
        return reply.exitcode, None
    rows = [
        {k: v for k, v in row.items() if k not in ("ctime", "message")} for row in reply.results
    ]
    return 0, sorted(rows, key=repr)


async def _compare(home, globus, restarted_port, truth_port, files: list[str]) -> list[str]:
    a = await _client(home, globus, restarted_port)
    b = await _client(home, globus, truth_port)
    wrong = []
    try:
        dirs = sorted({f.rsplit("/", 1)[0] for f in files})
        for d in dirs:  # ls and find of the directories first: answers get cached
            for cmd in (("ls", "-l", d), ("find", d, "*")):
                for _ in range(2):
                    got, want = _answer(await a.call(*cmd)), _answer(await b.call(*cmd))
                    if got != want:
                        wrong.append(f"{' '.join(cmd)}: {got} != {want}")
        for lfn in files:
            for cmd in (("whereis", lfn), ("stat", lfn)):
                for _ in range(2):  # the second answer may come from the cache
                    got, want = _answer(await a.call(*cmd)), _answer(await b.call(*cmd))
                    if got != want:
                        wrong.append(f"{' '.join(cmd)}: {got} != {want}")
            where = await a.call("whereis", lfn)
            if where.exitcode != 0 or not where.results:
                wrong.append(f"whereis {lfn}: copied but {where.exitcode} {where.error}")
    finally:
        await a.close()
        await b.close()
    return wrong


def test_kill_9_during_parallel_upload_leaves_no_stale_answer(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    cache_dir, se_port = tmp_path / "cache", free_port()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(FILES):
        (src / f"f{i:04d}.dat").write_bytes(os.urandom(64) + b"%d" % i)
    se_ssl = ssl.create_default_context(capath=str(home / "certificates"))
    se_ssl.check_hostname = False
    copied: list[str] = []
    for round_, kill_at in enumerate(KILL_AT):
        log = tmp_path / f"jcentral{round_}.log"
        proc = start_central(
            home, log, free_port(), (port := free_port()), _env(cache_dir, se_port)
        )

        async def upload(proc=proc, port=port, round_=round_, kill_at=kill_at) -> list[str]:
            client = await _client(home, globus, port)
            try:
                # whereis answers of this round's directory are cached before the upload
                await client.call("mkdir", "-p", f"up{round_}")
                report = await copy(
                    client,
                    [f"file:{src}/*"],
                    f"up{round_}/",
                    Options(threads=32, ssl=se_ssl, retries=1, backoff=0.05),
                    progress=_KillAt(proc, kill_at),
                )
            finally:
                await client.close()
            return [r.dst for r in report.results if r.status == "copied"]

        try:
            done = asyncio.run(upload())
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        copied += done
    assert len(copied) >= 40, f"only {len(copied)} copied before the kills"
    # restart on the same cache, and a second jcentral with a cache of its own as the truth
    a, b = free_port(), free_port()
    restart_env = _env(cache_dir, se_port)
    restarted = start_central(home, tmp_path / "restart.log", free_port(), a, restart_env)
    truth_env = {**_env(tmp_path / "fresh-cache", free_port()), "JALIEN_EMBEDDED_SE": "0"}
    truth = start_central(home, tmp_path / "truth.log", free_port(), b, truth_env)
    try:
        wrong = asyncio.run(_compare(home, globus, a, b, copied))
    finally:
        stop(truth)
        stop(restarted)
    assert not wrong, f"{len(wrong)} stale answers after kill -9, e.g. {wrong[:5]}"
