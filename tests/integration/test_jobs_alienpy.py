"""What users type every day about jobs and files, on a real jcentral with its embedded SE,
through alien.py 1.7.0 and jalien-bin: jobInfo (``ps -j ID -trace -jdl``), ps with JAliEn's
options and short codes, masterjob -printid, jobListMatch, w; with JAliEn's exit codes."""

from __future__ import annotations

import asyncio
import re

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import run_user, start_embedded_grid
from tests.integration.conftest import stop as stop_process
from tests.integration.test_jcentral_process import alien

pytestmark = pytest.mark.integration
HOME = "/alice/cern.ch/user/j/jdoe/"
JDL = 'Executable = "/bin/echo"; Arguments = "hello"; TTL = 600;'
MASTER = 'Executable = "sim.sh"; Split = "production:1-2"; TTL = 100;'


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    central = start_embedded_grid(tmp_path_factory.mktemp("daily"))
    yield central
    stop_process(central.proc)


def jb(grid, tmp_path, *args):
    return run_user(grid, tmp_path, *args)


def call(grid, *words) -> list[dict[str, str]]:
    """One command over the binary channel (what the test sets up before the clients)."""
    context = client_context(grid.globus / "usercert.pem", grid.globus / "userkey.pem", grid.ca_dir)

    async def run():
        client = Client("127.0.0.1", grid.binary_port, context, reconnect=False)
        await client.connect()
        try:
            reply = await client.call(*words)
            assert reply.exitcode == 0, reply.error
            return reply.results
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def jobs(grid):
    job = int(call(grid, "submit", "=<", JDL)[0]["jobId"])
    killed = int(call(grid, "submit", "=<", JDL)[0]["jobId"])
    call(grid, "kill", str(killed))
    master = int(call(grid, "submit", "=<", MASTER)[0]["jobId"])
    return job, killed, master


def test_alienpy_jobinfo(alienpy, grid, jobs, tmp_path):
    job = jobs[0]
    done = alien(alienpy, grid, "jobInfo", str(job), tmp_path=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"{job: <13}{0: <13}{'WAITING': <12}{'jdoe': <14}echo" in out, out
    assert "State info:" in out
    traced = alien(alienpy, grid, "jobInfo", str(job), "-trace", tmp_path=tmp_path)
    assert traced.returncode == 0 and "submitted" in traced.stdout, traced.stdout
    as_json = alien(alienpy, grid, "jobInfo", str(job), "-jdl", tmp_path=tmp_path)
    assert as_json.returncode == 0 and '":"/bin/echo"' in as_json.stdout


def test_alienpy_ps_jalien_options(alienpy, grid, jobs, tmp_path):
    job, killed, _ = jobs

    def a(*args):
        done = alien(alienpy, grid, "ps", *args, tmp_path=tmp_path)
        return done.returncode, done.stdout.strip(), done.stderr.strip()

    code, out, _ = a("-f", "f")  # failed: KILLED is not an error
    assert code == 0 and str(killed) not in out
    code, out, _ = a("-f", "d")  # nothing is done yet
    assert (code, out) == (0, "")
    code, out, _ = a("-f", "K")
    assert code == 0 and str(killed) in out and "  K  " in out and "KILLED" not in out
    code, out, _ = a("-f", "s", "-M")
    assert code == 0 and str(job) in out and "  W  " in out and str(killed) not in out
    code, out, _ = a("-L", "-id")
    assert code == 0 and str(job) in out.split()
    code, out, err = a("-nope")
    assert code == 22 and "usage: ps" in out + err
    trace = alien(alienpy, grid, "ps", "-trace", str(job), tmp_path=tmp_path)
    assert trace.returncode == 0 and "[trace     ]: submitted" in trace.stdout


def test_alienpy_masterjob_and_list_match(alienpy, grid, jobs, tmp_path):
    master = jobs[2]
    done = alien(alienpy, grid, "masterjob", str(master), "-printid", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Subjobs in WAITING: 2 (ids: " in done.stdout
    sites = alien(alienpy, grid, "masterjob", str(master), "-printsite", tmp_path=tmp_path)
    assert sites.returncode == 0 and "1 sites" in sites.stdout
    match = alien(alienpy, grid, "jobListMatch", str(jobs[0]), tmp_path=tmp_path)
    assert match.returncode == 0 and "No site has asked" in match.stdout
    usage = alien(alienpy, grid, "jobListMatch", tmp_path=tmp_path)
    assert usage.returncode == 22


def test_jalien_bin_ps_and_masterjob(grid, jobs, tmp_path):
    job, _, master = jobs
    code, out, err = jb(grid, tmp_path, "ps", "-f", "d")
    assert code == 0 and str(job) not in out, out + err
    code, out, err = jb(grid, tmp_path, "ps", "-j", str(job), "-trace", "-jdl")
    assert code == 0 and str(job) in out and "  W  " in out, out + err
    code, out, err = jb(grid, tmp_path, "masterjob", str(master), "-printid")
    assert code == 0 and "Subjobs in WAITING: 2" in out, out + err
    code, out, err = jb(grid, tmp_path, "ps", "-Q")
    assert code == 22 and "usage: ps" in out + err


@pytest.fixture(scope="module")
def notes(grid, tmp_path_factory):
    """A small text file uploaded to the embedded SE: its LFN and GUID."""
    local = tmp_path_factory.mktemp("notes") / "notes.txt"
    local.write_text("alpha\nBeta run\ngamma beta\n")
    code, out, err = jb(grid, local.parent, "cp", f"file:{local}", "notes.txt")
    assert code == 0, out + err
    found = call(grid, "lfn2guid", f"{HOME}notes.txt")
    guid = next(v for r in found for v in r.values() if UUID.fullmatch(v))
    return f"{HOME}notes.txt", guid


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_alienpy_information_commands(alienpy, grid, notes, tmp_path):
    lfn, guid = notes

    def a(*args):
        done = alien(alienpy, grid, *args, tmp_path=tmp_path)
        return done.returncode, done.stdout.strip(), done.stderr.strip()

    assert a("echo", "hello", "grid") == (0, "hello grid", "")
    code, out, _ = a("uuid", "notes.txt")
    assert code == 0 and out.startswith("notes.txt : created on ") and " on " in out, out
    code, out, err = a("uuid", "no-such-file")
    assert code == 1 and "File does not exist: no-such-file" in out + err
    code, out, _ = a("guidinfo", guid)
    assert code == 0 and f"LFN: {lfn}" in out and "ALICE::LOCAL::SE" in out, out
    code, out, err = a("guidinfo", "2a6f0c5e-9f3b-11ee-8c90-0242ac120002")
    assert code == 2 and "Cannot find this GUID" in out + err
    code, out, _ = a("df")
    assert code == 0 and "ALICE::LOCAL::SE" in out and "Available" in out, out
    code, out, _ = a("xrdstat", "notes.txt")
    assert code == 0 and "ALICE::LOCAL::SE" in out and "OK" in out, out
    code, out, _ = a("grep", "-i", "beta", "notes.txt")
    assert (code, out) == (0, "Beta run\ngamma beta")
    code, out, err = a("grep", "zeta", "notes.txt")
    assert code == 1
    code, out, err = a("grep", "beta")
    assert code == 22 and "usage: grep" in out + err
    code, out, _ = a("timing", "3", "ls")  # alien.py answers "time" itself
    assert code == 0 and '"ls" with #3 tries,' in out, out
    code, out, _ = a("w")
    assert code == 0 and "jdoe" in out and "TOTAL" in out, out
    code, out, _ = a("lfnexpiretime", "notes.txt")
    assert (code, out) == (0, f"{lfn}: no expire time")
    code, out, _ = a("lfnexpiretime", "-a", "-d", "2", "notes.txt")
    assert code == 0 and out.startswith(f"{lfn}: expires on "), out
    first = int(out.rsplit("(", 1)[1].rstrip(")"))
    code, out, _ = a("lfnexpiretime", "-e", "-w", "1", "notes.txt")
    assert code == 0 and int(out.rsplit("(", 1)[1].rstrip(")")) == first + 7 * 86_400_000
    code, out, err = a("lfnexpiretime", "-a", "notes.txt")
    assert code == 22 and "usage: lfnexpiretime" in out + err
    code, out, err = a("lfnexpiretime", "-d", "1", "missing.txt")
    assert code == 2
    code, out, _ = a("lfnexpiretime", "-r", "notes.txt")
    assert (code, out) == (0, f"{lfn}: no expire time")
    code, out, _ = a("setSite", "GSI")
    assert code == 0 and "Setting close site to GSI" in out


def test_jalien_bin_information_commands(grid, notes, tmp_path):
    _, guid = notes
    code, out, err = jb(grid, tmp_path, "cat", "-n", "notes.txt")
    assert code == 0 and out.strip() == "1\talpha\n     2\tBeta run\n     3\tgamma beta", out + err
    code, out, err = jb(grid, tmp_path, "cat", "missing.txt")
    assert code == 2, out + err
    code, out, err = jb(grid, tmp_path, "grep", "-c", "a", "notes.txt")
    assert code == 0 and out.strip() == "3", out + err
    code, out, err = jb(grid, tmp_path, "uuid", guid)
    assert code == 0 and f"{guid} : created on" in out, out + err
    code, out, err = jb(grid, tmp_path, "timing", "2", "pwd")
    assert code == 0 and '"pwd" with #2 tries' in out, out + err
    code, out, err = jb(grid, tmp_path, "time", "x", "pwd")
    assert code == 22 and "Usage: time <times>" in out + err
