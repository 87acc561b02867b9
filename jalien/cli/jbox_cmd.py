"""``jalien-bin --role jbox``: ask the key's password once, then run the desktop agent."""

from __future__ import annotations

import argparse
import sys

from jalien.auth.certs import certs_pem, key_pem
from jalien.auth.errors import AuthError
from jalien.cli.credentials import load_user_credentials
from jalien.config import Settings
from jalien.net import discovery
from jalien.roles.jbox import JBoxOptions, run_jbox


def central_endpoint(value: str | None, settings: Settings) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT``; the defaults come from the settings."""
    if not value:
        return settings.central_host, settings.binary_port
    host, port = value, settings.binary_port
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], value)
    elif value.count(":") == 1:
        host, raw = value.split(":")
        port = _port(raw, value)
    if not host:
        raise AuthError(f"--central {value!r}: no host")
    return host, port


def _port(raw: str, value: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise AuthError(f"--central {value!r}: {raw!r} is not a port")
    return int(raw)


def jbox_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        host, port = central_endpoint(args.central, settings)
        hours = args.token_hours if args.token_hours is not None else 24.0
        if not 0 < hours <= 31 * 24:
            raise AuthError(f"--token-hours {hours:g}: use a number of hours in (0, 744]")
        running = discovery.running_jbox()
        if running is not None:
            raise AuthError(f"a jBox is already running (pid {running}); stop it first")
        certs, key, _dn = load_user_credentials(password_stdin=args.password_stdin)
    except AuthError as exc:
        print(f"jalien-bin: {exc}", file=sys.stderr)
        return 1
    chain, secret = certs_pem(certs), key_pem(key)
    del key
    log_file = args.log_file
    if args.detach and not log_file:
        settings.home_path.mkdir(parents=True, exist_ok=True)
        log_file = str(settings.home_path / "jbox.log")
    options = JBoxOptions(
        central_host=host,
        central_port=port,
        token_hours=hours,
        # several jcentrals (central_hosts) unless --central names one
        alternates=[] if args.central else discovery.central_endpoints(settings),
    )
    return run_jbox(settings, options, chain, secret, detach=args.detach, log_file=log_file)
