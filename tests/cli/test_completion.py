"""The command line explains itself: `jalien-bin --help` lists every subcommand and role,
each subcommand has --help, and the bash/zsh completion scripts complete subcommands,
options and grid paths (through the hidden `__complete`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jalien.cli import completion
from jalien.cli.main import ROLES, main
from jalien.wire.messages import Reply

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = {
    "bash": ROOT / "packaging/completion/jalien-bin.bash",
    "zsh": ROOT / "packaging/completion/_jalien-bin",
}


def test_help_lists_every_subcommand_and_role_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in ("shell", "setup", "proxy", "cp", "completion", "<command>", *ROLES):
        assert sum(line.split()[:1] == [name] for line in lines) == 1, name
    assert "any grid command" in out and "__complete" not in out


@pytest.mark.parametrize(
    "argv",
    [["setup", "--help"], ["proxy", "--help"], ["cp", "--help"], ["shell", "--help"],
     ["completion", "--help"], *(["--role", role, "--help"] for role in ROLES)],
)  # fmt: skip
def test_each_subcommand_has_help(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's help
        code = exc.code
    assert code == 0
    assert "usage: jalien-bin" in capsys.readouterr().out


def test_completion_refuses_an_unknown_shell(capsys):
    assert main(["completion", "fish"]) == 2
    assert "bash or zsh" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_packaged_scripts_are_what_the_command_prints(shell, capsys):
    """packaging/completion/ is made by `jalien-bin completion SHELL > FILE`."""
    assert main(["completion", shell]) == 0
    assert PACKAGED[shell].read_text() == capsys.readouterr().out


FAKE = """#!/bin/bash
if [[ $1 == __complete ]]; then
  if [[ $2 == --commands ]]; then printf '%s\\n' ls find whoami; exit; fi
  printf '%s\\n' /alice/ /alice/cern.ch/ /alice/data.root
fi
"""

CASES = {
    "jalien-bin s": "shell setup",
    "jalien-bin --role j": "jcentral jbox jobagent",
    "jalien-bin --role jcentral --bi": "--binary-port",
    "jalien-bin setup --gl": "--globus-dir",
    "jalien-bin proxy ''": "destroy info init renew",
    "jalien-bin proxy init -v": "-valid",
    "jalien-bin ls /alice/c": "/alice/cern.ch/",
    "jalien-bin wh": "whoami",
    "jalien-bin completion ''": "bash zsh",
}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_subcommands_options_and_grid_paths(tmp_path):
    fake = tmp_path / "jalien-bin"  # answers __complete as a running grid would
    fake.write_text(FAKE)
    fake.chmod(0o755)
    script = completion.bash_script()
    lines = [
        script,
        't() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _jalien_bin; '
        'echo "${COMPREPLY[*]}"; }',
        *(f"t {words}" for words in CASES),
    ]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == list(CASES.values()), done.stderr


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh on this machine")
def test_zsh_script_parses_and_registers(tmp_path):
    subprocess.run(["zsh", "-n", str(PACKAGED["zsh"])], check=True)
    script = f"autoload -U compinit; compinit -u -D; source {PACKAGED['zsh']}; "
    script += "echo ${_comps[jalien-bin]}"
    done = subprocess.run(
        ["zsh", "-f", "-c", script],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "_jalien_bin"


class FakeCredentials:
    def __init__(self, password: bool) -> None:
        self.password = password

    def needs_password(self) -> bool:
        return self.password


class FakeConnection:
    calls: list = []

    def __init__(self, settings, env, *, connect_timeout) -> None:
        assert connect_timeout <= 5

    def call(self, command, args, timeout=None):
        FakeConnection.calls.append((command, args, timeout))
        if command == "commandlist":
            return Reply(results=[{"commandlist": "ls"}, {"commandlist": "whoami"}])
        return Reply(results=[{"message": "cern.ch/"}, {"message": "data.root"}])

    def close(self) -> None:
        pass


def test_complete_asks_ls_of_the_prefix_directory(monkeypatch):
    from jalien.cli import shell
    from jalien.net import discovery

    monkeypatch.setattr(shell, "Connection", FakeConnection)
    creds = [FakeCredentials(False)]
    monkeypatch.setattr(discovery, "credentials_in_order", lambda env: iter(creds))
    FakeConnection.calls = []
    assert completion.grid_names(["--", "/alice/c"]) == ["/alice/cern.ch/"]
    assert FakeConnection.calls[-1][:2] == ("ls", ["-F", "/alice/"])
    assert FakeConnection.calls[-1][2] <= 5  # a short timeout
    assert completion.grid_names(["--commands"]) == ["ls", "whoami"]
    # a key with a password: completion never asks, it offers nothing
    creds[0] = FakeCredentials(True)
    FakeConnection.calls = []
    assert completion.grid_names(["--", "/alice/c"]) == [] and not FakeConnection.calls


def test_complete_without_a_grid_prints_nothing_and_succeeds(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "JALIEN_HOME": str(tmp_path)}
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = "1"
    done = subprocess.run(
        [shutil.which("jalien-bin") or "jalien-bin", "__complete", "--", "/al"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
