"""The README's first two commands are the promise: `./jalien.sh run` starts a grid on a bare
machine, `./jalien.sh test` tests it. CI runs the second and little else, and the run test runs
the first, so neither drifts from what users type."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.readme import ROOT, readme_commands, run_command

RUN_TEST = ROOT / "tests" / "integration" / "test_run_command.py"


def _script_lines(path: Path) -> list[list[str]]:
    """The commands of a bash script, comments and set-up lines (set, cd, export) left out."""
    commands = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if words and words[0] not in ("set", "cd", "export"):
            commands.append(words)
    return commands


def test_readme_starts_with_run_then_test():
    assert readme_commands() == [["./jalien.sh", "run"], ["./jalien.sh", "test"]]


def test_ci_runs_the_readme_test_command_first_and_installs_nothing_itself():
    commands = _script_lines(ROOT / ".ci" / "run")
    assert commands[0] == readme_commands()[1]
    text = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in text and "ensure_mariadb" not in text  # the test path does it


def test_the_run_test_runs_the_readme_run_command():
    assert run_command() == ["./jalien.sh", "run"]
    source = RUN_TEST.read_text()
    assert "run_command()" in source and "cwd=ROOT" in source


def test_run_installs_no_test_tools_nor_the_mariadb_driver():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "mysqlclient" not in runtime and "pytest" not in runtime
    assert any(d.startswith("mysqlclient") for d in project["optional-dependencies"]["mariadb"])
    assert "mypy==" in " ".join(project["optional-dependencies"]["test"])
    script = (ROOT / "jalien.sh").read_text()
    run_branch = script.split("\n  run)\n", 1)[1].split("\n    ;;\n", 1)[0]
    assert 'ensure_system "${RUN_PACKAGES[@]}"' in run_branch
    assert "\n    ensure_env\n" in run_branch  # no extras
    run_packages = script.split("RUN_PACKAGES=(", 1)[1].split(")", 1)[0].split()
    assert "libmariadb-dev" not in run_packages and "pkg-config" not in run_packages
