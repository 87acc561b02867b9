"""``jalien-bin setup``: a newcomer's grid identity in one command (see jalien.auth.setup)."""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import sys

from jalien.auth.errors import AuthError
from jalien.auth.setup import run_setup
from jalien.config import Settings


def _password(args: argparse.Namespace) -> bytes | None:
    if args.no_password:
        return None
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\n")
        return line.encode() or None
    if not sys.stdin.isatty():
        return None  # non-interactive and nothing asked: a clear key, said in the report
    first = getpass.getpass("Password for the new user key (empty for none): ")
    if not first:
        return None
    if getpass.getpass("Repeat the password: ") != first:
        raise AuthError("the passwords differ")
    return first.encode()


def setup_command(args: argparse.Namespace, settings: Settings) -> int:
    login = args.login or os.environ.get("JALIEN_USER") or pwd.getpwuid(os.getuid()).pw_name
    try:
        password = _password(args)
        report = run_setup(
            settings,
            globus_dir=args.globus_dir,
            password=password,
            login=login,
            hostnames=args.host,
            force=args.force,
        )
    except AuthError as exc:
        print(f"jalien-bin setup: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    if password is None and report.created:
        print("note: the user key has no password (use --password-stdin or run interactively)")
    return 0
