"""The shell and one-shot commands against an in-process server (which has slow commands):
Ctrl-C on a terminal cancels the command, not the shell; output, -json and exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys

import pytest

from jalien.cli.shell import Connection, Shell, one_shot, render
from jalien.config import Settings
from jalien.wire.messages import DirEntry, Reply
from tests.ptyproc import PtyProcess

PROMPT = "jsh: [jdoe@TEST::SITE] /alice/cern.ch/user/j/jdoe/ > "


def client_env(grid_pki, server, tmp_path, login="jdoe") -> dict[str, str]:
    """A JobAgent payload's view: JALIEN_HOST/JALIEN_PORT, a certificate, the CA dir."""
    cred = grid_pki.users[login]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "JALIEN_HOME": str(tmp_path / ".jalien"),
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(server.ports()["binary"]),
        "X509_USER_CERT": str(cred.cert),
        "X509_USER_KEY": str(cred.key),
        "X509_CERT_DIR": str(grid_pki.ca_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
    return env


# started as a background job of a non-interactive shell does: SIGINT ignored, then exec
IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, '-m', 'jalien', 'shell'])"
)


@pytest.mark.parametrize("sigint", ["default", "ignored by the parent"])
async def test_ctrl_c_cancels_the_command_not_the_shell(make_server, grid_pki, tmp_path, sigint):
    """Ctrl-C cancels the running command, whatever SIGINT's disposition at start (a background
    job of a script starts with SIGINT ignored: the shell installs its own handling)."""
    server = await make_server()
    argv = [sys.executable, "-m", "jalien", "shell"]
    if sigint != "default":
        argv = [sys.executable, "-c", IGNORING_SIGINT]
    shell = PtyProcess(argv, client_env(grid_pki, server, tmp_path))
    expect = lambda *a, **k: asyncio.to_thread(shell.expect, *a, **k)  # noqa: E731
    try:
        at = await expect(PROMPT)
        shell.send("sleep 30000\r")
        await asyncio.sleep(0.5)  # the command runs on the server
        shell.send("\x03")
        at = await expect("^C cancelled", start=at)  # the terminal echoes ^C
        for _ in range(200):  # the Cancel reached the server: its task was cancelled
            if server.test_commands.cancelled:
                break
            await asyncio.sleep(0.02)
        assert server.test_commands.cancelled == 1
        at = await expect("> ", start=at)
        shell.send("whoami\r")
        at = await expect("\njdoe\n", start=at)
        await expect(PROMPT, start=at)
        prompts = shell.output().count(PROMPT)
        shell.send("\x03")  # at the prompt: a new line, a new prompt, the shell stays
        for _ in range(500):
            if shell.output().count(PROMPT) > prompts:
                break
            await asyncio.sleep(0.01)
        shell.send("fail\r")
        at = await expect("No such file or directory", start=at)
        shell.send("\x04")  # Ctrl-D ends it with the last exit code
        assert await asyncio.to_thread(shell.wait) == 2
    finally:
        shell.close()


async def test_one_shot_json_and_exit_codes(make_server, grid_pki, tmp_path, monkeypatch):
    server = await make_server()
    for name, value in client_env(grid_pki, server, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JALIEN_CONFIG", raising=False)

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = one_shot(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await asyncio.to_thread(run, "whoami")
    assert (code, out) == (0, "jdoe\n"), err
    code, out, _ = await asyncio.to_thread(run, "-json", "whoami")
    doc = json.loads(out)
    assert code == 0 and doc["results"][0]["message"] == "jdoe"
    assert doc["metadata"]["user"] == "jdoe" and doc["metadata"]["exitcode"] == "0"
    code, out, err = await asyncio.to_thread(run, "fail")
    assert (code, out, err) == (2, "", "No such file or directory\n")
    code, _, err = await asyncio.to_thread(run, "crash")
    assert code == 121 and "ZeroDivisionError" in err
    monkeypatch.setenv("JALIEN_PORT", "1")  # nothing listens there, nor on central's port
    monkeypatch.setenv("JALIEN_BINARY_PORT", "2")
    code, _, err = await asyncio.to_thread(run, "whoami")
    assert code == 107 and "no connection" in err and "JALIEN_HOST" in err


async def test_shell_lines_and_completion(make_server, grid_pki, tmp_path, monkeypatch):
    server = await make_server()
    env = client_env(grid_pki, server, tmp_path)
    out, err = io.StringIO(), io.StringIO()
    connection = Connection(Settings(home=str(tmp_path)), env)
    shell = Shell(connection, out, err)
    try:
        await asyncio.to_thread(shell.start)
        assert "whoami" in shell.commands and shell.user == "jdoe"
        assert shell.prompt() == "jsh: [jdoe@TEST::SITE] /alice/cern.ch/user/j/jdoe/ > "
        assert shell.complete_words("who", 0, "who") == ["whoami "]
        assert shell.complete_words("whoami /al", 7, "/al") == []  # no ls: no paths
        assert await asyncio.to_thread(shell.run_line, "ping -x") is True
        assert out.getvalue().endswith("pong\n")
        assert await asyncio.to_thread(shell.run_line, "exit") is False
        await asyncio.to_thread(shell.run_line, "whoami -json")
        assert json.loads(out.getvalue().split("pong\n", 1)[1])["results"][0]["user"] == "jdoe"
    finally:
        await asyncio.to_thread(connection.close)


def test_render_entries_as_jalien_text():
    reply = Reply(
        entries=[DirEntry(name="a.root", type="f"), DirEntry(name="sub", type="d")],
        view="ls:F",
        error="",
    )
    out, err = io.StringIO(), io.StringIO()
    assert render(reply, False, out, err) == 0
    assert out.getvalue() == "a.root\nsub/\n"


@pytest.mark.parametrize("argv", [["shell", "--frobnicate"], ["proxy", "explode"]])
def test_bad_usage_is_an_error_not_a_traceback(argv, capsys):
    from jalien.cli.main import main

    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


async def test_a_refused_token_file_falls_back_to_the_user_certificate(
    make_server, grid_pki, tmp_path, monkeypatch, capsys
):
    """A token file of another grid in $TMPDIR (a foreign CA here) wins by the search
    order; the server refuses it and the client goes on with ~/.globus's certificate."""
    import shutil

    from jalien.net import discovery

    server = await make_server()
    env = client_env(grid_pki, server, tmp_path)
    cert_path, key_path = discovery.token_cert_paths(env)
    shutil.copy(grid_pki.users["foreigner"].cert, cert_path)
    shutil.copy(grid_pki.users["foreigner"].key, key_path)
    connection = Connection(Settings(home=str(tmp_path)), env)
    try:
        reply = await asyncio.to_thread(connection.call, "whoami", [])
    finally:
        await asyncio.to_thread(connection.close)  # the server runs on this loop
    assert reply.results[0]["message"] == "jdoe"
    assert connection.credentials is not None and connection.credentials.kind == "usercert"
    assert f"the server refused token ({cert_path})" in capsys.readouterr().err
