"""Writes docs/permissions.md (command x identity kind) from jalien.auth.policy and
jcentral's command table, built in a throw-away home. Run it after adding a command or
changing the policy; tests/auth/test_policy.py fails while the file is out of date.

    python build/gen_permissions.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jalien.auth.policy import table_markdown
from jalien.roles.jcentral import command_actions

DOC = Path(__file__).resolve().parent.parent / "docs" / "permissions.md"


def render() -> str:
    return table_markdown(command_actions().items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    text = render()
    if parser.parse_args().check:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is out of date: run python build/gen_permissions.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
