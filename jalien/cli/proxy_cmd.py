"""``jalien-bin proxy``: RFC 3820 proxy certificates, the way grid-proxy-* tools make them.

    jalien-bin proxy init    [-valid HH:MM] [-bits N] [-limited] [-out FILE] [--password-stdin]
    jalien-bin proxy info    [-file FILE] [-timeleft | -exists [-valid HH:MM]]
    jalien-bin proxy renew   [-min HH:MM] [init options]   (a new proxy only when due)
    jalien-bin proxy destroy [-file FILE]

The file is ``$X509_USER_PROXY`` or ``/tmp/x509up_u<uid>`` (proxy certificate, its key, then
the user certificate), mode 0600. Exit codes: 0 done (``-exists``: valid long enough),
1 failed or no such proxy, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from jalien.auth.certs import load_certs, utcnow
from jalien.auth.errors import AuthError
from jalien.auth.identity import cert_end_entity_dn
from jalien.auth.names import dn_string
from jalien.auth.proxy import is_limited, is_proxy, make_proxy, time_left, write_proxy_file
from jalien.cli.credentials import load_user_credentials
from jalien.net.discovery import proxy_path
from jalien.wire.errors import EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits with 2 and usage: keep, but no traceback
        self.print_usage(sys.stderr)
        print(f"jalien-bin proxy: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def hhmm(value: str) -> dt.timedelta:
    """``HH:MM`` (grid-proxy-init's -valid) or a number of hours."""
    try:
        if ":" in value:
            hours, minutes = value.split(":")
            delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
            if not 0 <= int(minutes) < 60:
                raise ValueError
        else:
            delta = dt.timedelta(hours=float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not HH:MM") from None
    if delta.total_seconds() < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return delta


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jalien-bin proxy", allow_abbrev=False, description="RFC 3820 proxies")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    init = sub.add_parser("init", help="make a proxy from the user certificate")
    renew = sub.add_parser("renew", help="make a new proxy when less than -min is left")
    for p in (init, renew):
        p.add_argument("-valid", type=hhmm, default=dt.timedelta(hours=12), help="default 12:00")
        p.add_argument("-bits", type=int, default=2048)
        p.add_argument("-limited", action="store_true", help="a limited (Globus) proxy")
        p.add_argument("-out", help="proxy file (default $X509_USER_PROXY or /tmp/x509up_u<uid>)")
        p.add_argument("--password-stdin", action="store_true", help="read the key password")
    renew.add_argument("-min", type=hhmm, default=dt.timedelta(hours=1), help="default 1:00")
    info = sub.add_parser("info", help="show the proxy and its time left")
    info.add_argument("-file", help="proxy file")
    what = info.add_mutually_exclusive_group()
    what.add_argument("-timeleft", action="store_true", help="seconds left only")
    what.add_argument("-exists", action="store_true", help="exit 0 if valid (for -valid)")
    info.add_argument("-valid", type=hhmm, default=dt.timedelta(0))
    destroy = sub.add_parser("destroy", help="remove the proxy file")
    destroy.add_argument("-file", help="proxy file")
    return parser


def _strength(cert: x509.Certificate) -> str:
    """Key size in bits (RSA, EC); the key type for keys without one (an Ed25519 certificate)."""
    key = cert.public_key()
    bits = getattr(key, "key_size", None)
    return f"{bits} bits" if isinstance(bits, int) else type(key).__name__.removesuffix("PublicKey")


def _hms(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def init(args: argparse.Namespace, path: Path) -> int:
    certs, key, dn = load_user_credentials(password_stdin=args.password_stdin)
    proxy, proxy_key = make_proxy(
        certs[0],
        key,
        hours=args.valid.total_seconds() / 3600,
        bits=args.bits,
        limited=args.limited,
    )
    write_proxy_file(path, proxy, proxy_key, certs)
    print(f"Your identity: {dn}")
    print(f"Proxy written to {path}")
    print(f"Your proxy is valid until: {proxy.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    left = proxy.not_valid_after_utc - utcnow()
    if left + dt.timedelta(minutes=1) < args.valid:
        print("note: the proxy ends with the user certificate, before the time asked for")
    return 0


def renew(args: argparse.Namespace, path: Path) -> int:
    try:
        left = time_left(load_certs(path)[0])
    except AuthError:
        left = -1.0
    if left > args.min.total_seconds():
        print(f"the proxy {path} has {_hms(left)} left; not renewed (-min {args.min})")
        return 0
    return init(args, path)


def info(args: argparse.Namespace, path: Path) -> int:
    if not path.exists():
        if args.exists:
            return 1
        raise AuthError(f"no proxy at {path} (make one with `jalien-bin proxy init`)")
    certs = load_certs(path)
    proxy = certs[0]
    left = time_left(proxy)
    if args.exists:
        return 0 if left >= max(args.valid.total_seconds(), 1) else 1
    if args.timeleft:
        print(max(int(left), 0))
        return 0
    if not is_proxy(proxy):
        kind = "end entity certificate (not a proxy)"
    elif is_limited(proxy):
        kind = "RFC 3820 compliant limited proxy"
    else:
        kind = "RFC 3820 compliant impersonation proxy"
    lines = [
        ("subject", dn_string(proxy.subject)),
        ("issuer", dn_string(proxy.issuer)),
        ("identity", cert_end_entity_dn(proxy)),
        ("type", kind),
        ("strength", _strength(proxy)),
        ("path", str(path)),
        ("timeleft", _hms(left) + ("  (expired)" if left <= 0 else "")),
    ]
    for name, value in lines:
        print(f"{name:<9}: {value}")
    return 0 if left > 0 else 1


def destroy(args: argparse.Namespace, path: Path) -> int:
    try:
        size = path.stat().st_size
        with open(path, "r+b") as fh:  # overwrite the key before the name goes
            fh.write(b"\0" * size)
        path.unlink()
    except FileNotFoundError:
        print(f"no proxy at {path}")
        return 0
    except OSError as exc:
        raise AuthError(f"cannot remove {path}: {exc.strerror}") from None
    print(f"removed {path}")
    return 0


def proxy_command(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    given = getattr(args, "out", None) or getattr(args, "file", None)
    path = Path(os.path.expanduser(given)) if given else proxy_path()
    action = {"init": init, "renew": renew, "info": info, "destroy": destroy}[args.action]
    try:
        return action(args, path)
    except AuthError as exc:
        print(f"jalien-bin proxy: {exc}", file=sys.stderr)
        return 1
