"""The README's first commands, as a user copies them: the first ```sh block's first two lines,
comments removed. tests/test_readme_commands.py checks that `.ci/run` runs the second and
tests/integration/test_run_command.py runs the first."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """The README's first two commands, each split as the shell splits it."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line][:2]


def run_command() -> list[str]:
    """`./jalien.sh run` as an argv to start from ROOT."""
    return readme_commands()[0]
