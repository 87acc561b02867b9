"""The command line of ``jalien-bin``: a role to run, a tool (setup), or a user command.

    jalien-bin --role jcentral|vobox|jobagent|jbox|se [options]
    jalien-bin setup [--login NAME] [--password-stdin | --no-password] [--force]
    jalien-bin proxy init|info|destroy|renew [options]
    jalien-bin shell
    jalien-bin cp SRC... DST
    jalien-bin completion bash|zsh
    jalien-bin [-json] <command> [args]     (one command on the server: whoami, ls -l, ...)
    jalien-bin --version

Imports of roles sit inside the functions that need them (static imports all the same, so
Nuitka sees every role) to keep ``--version`` and one-shot commands quick to start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jalien.version import __version__
from jalien.wire.errors import EXIT_USAGE

ROLES = ("jcentral", "jbox", "se", "jobagent", "vobox")


class CliError(Exception):
    """A user-facing error: printed as one line, exit code attached."""

    def __init__(self, message: str, exitcode: int = 1) -> None:
        super().__init__(message)
        self.exitcode = exitcode


def _role_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jalien-bin", description="ALICE grid middleware")
    parser.add_argument("--version", action="version", version=f"jalien {__version__}")
    parser.add_argument("--role", choices=ROLES, required=True, help="service to run")
    parser.add_argument("--config", help="TOML config file (also $JALIEN_CONFIG)")
    parser.add_argument("--home", help="state directory (default ~/.jalien, $JALIEN_STATE_DIR)")
    parser.add_argument("--ws-port", type=int, help="WebSocket JSON port (default 8097)")
    parser.add_argument("--binary-port", type=int, help="binary channel port (default 8098)")
    parser.add_argument(
        "--workers",
        type=int,
        help="jcentral: worker processes sharing the ports (default: the host's cores; 1: one)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        help="address to listen on (repeatable; default both 127.0.0.1 and ::1)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    jbox = parser.add_argument_group("jbox and vobox")
    jbox.add_argument("--central", help="central services, HOST[:PORT] (binary channel)")
    jbox.add_argument("--token-hours", type=float, help="token lifetime (default 24)")
    jbox.add_argument("--detach", action="store_true", help="go to the background when ready")
    jbox.add_argument("--log-file", help="where a detached jBox logs (~/.jalien/jbox.log)")
    jbox.add_argument("--password-stdin", action="store_true", help="read the key password")
    return parser


def _setup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jalien-bin setup",
        description="Create a development CA, host and user credentials (never overwrites).",
    )
    parser.add_argument("--home", help="state directory (default ~/.jalien)")
    parser.add_argument("--login", help="account name (default: your user name)")
    parser.add_argument("--globus-dir", help="where usercert.pem/userkey.pem go (~/.globus)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the key password")
    group.add_argument("--no-password", action="store_true", help="leave the user key clear")
    parser.add_argument("--host", action="append", help="host certificate names (repeatable)")
    parser.add_argument("--force", action="store_true", help="regenerate existing credentials")
    return parser


def _settings(args: argparse.Namespace):
    from jalien.config import ConfigError, load_settings

    try:
        return load_settings(
            getattr(args, "config", None),
            home=args.home,
            ws_port=getattr(args, "ws_port", None),
            binary_port=getattr(args, "binary_port", None),
            workers=getattr(args, "workers", None),
            listen=getattr(args, "listen", None),
            log_level=getattr(args, "log_level", None),
        )
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def run_role(argv: Sequence[str]) -> int:
    args = _role_parser().parse_args(argv)
    settings = _settings(args)
    if args.role == "jcentral":
        from jalien.roles.jcentral import run_jcentral

        return run_jcentral(settings)
    if args.role == "jbox":
        from jalien.cli.jbox_cmd import jbox_command

        return jbox_command(args, settings)
    if args.role == "se":
        from jalien.roles.se import run_se

        return run_se(settings)
    if args.role == "jobagent":
        from jalien.roles.jobagent import run_jobagent

        return run_jobagent(settings)
    if args.role == "vobox":
        from jalien.roles.vobox import run_vobox

        return run_vobox(settings, args.central)
    raise CliError(f"unknown role {args.role}", EXIT_USAGE)


def run_setup(argv: Sequence[str]) -> int:
    from jalien.cli.setup_cmd import setup_command

    args = _setup_parser().parse_args(argv)
    return setup_command(args, _settings(args))


def debug_info() -> int:
    """Print what runs: version, framing twin (the binary build checks 'cython'), every hot
    path's twin, Nuitka or not."""
    from jalien import _fast

    compiled = "__compiled__" in globals()  # set by Nuitka in every module it compiles
    print(f"jalien: {__version__}")
    print(f"implementation: {_fast.IMPLEMENTATION}")
    print("twins: " + " ".join(f"{k}={v}" for k, v in _fast.implementations().items()))
    print(f"framing module: {getattr(_fast.framing, '__file__', '?')}")
    print(f"compiled: {'nuitka' if compiled else 'no'}")
    print(f"python: {sys.version.split()[0]}")
    print(f"executable: {sys.executable}")
    return 0


def usage() -> str:
    """``jalien-bin --help``: every subcommand and role with one line, as git and kubectl do."""
    from jalien.cli.completion import ROLE_HELP, SUBCOMMANDS

    lines = [
        "usage: jalien-bin <command> [args]",
        "       jalien-bin --role ROLE [options]",
        "",
        "jalien: ALICE's grid middleware (JAliEn) as one program.",
        "",
        "Commands:",
        *(f"  {name:<12} {text}" for name, text in SUBCOMMANDS.items()),
        f"  {'<command>':<12} any grid command, run once on the server: ls, find, stat, ps,",
        f"  {'':<12} submit, whoami, ... (`jalien-bin commandlist` lists them; -json for JSON)",
        "",
        "Roles (jalien-bin --role ROLE --help lists a role's options):",
        *(f"  {name:<12} {ROLE_HELP[name]}" for name in ROLES),
        "",
        "Options:",
        f"  {'--version':<12} print the version",
        f"  {'-h, --help':<12} this help; `jalien-bin COMMAND --help` for a command's",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(usage(), file=sys.stdout if argv else sys.stderr)
            return 0 if argv else EXIT_USAGE
        if argv[0] in ("--version", "-V"):
            print(f"jalien {__version__}")
            return 0
        if argv[0] == "setup":
            return run_setup(argv[1:])
        if argv[0] == "debug-info":  # hidden: what this jalien-bin is made of
            return debug_info()
        if argv[0] == "proxy":
            from jalien.cli.proxy_cmd import proxy_command

            return proxy_command(argv[1:])
        if argv[0] == "shell":
            from jalien.cli.shell import shell_command

            return shell_command(argv[1:])
        if argv[0] == "cp":
            from jalien.cli.cp_cmd import cp_command

            return cp_command(argv[1:])
        if argv[0] == "completion":
            from jalien.cli.completion import completion_command

            return completion_command(argv[1:])
        if argv[0] == "__complete":  # hidden: what the completion scripts ask
            from jalien.cli.completion import complete_command

            return complete_command(argv[1:])
        if any(a == "--role" or a.startswith("--role=") for a in argv):
            return run_role(argv)
        if argv[0] == "-json" or not argv[0].startswith("-"):
            from jalien.cli.shell import one_shot

            return one_shot(argv)
        raise CliError(f"unknown command: {argv[0]} (try jalien-bin --help)", EXIT_USAGE)
    except CliError as exc:
        print(f"jalien-bin: {exc}", file=sys.stderr)
        return exc.exitcode
    except KeyboardInterrupt:
        return 130
