"""``jalien-bin shell`` and one-shot commands (``jalien-bin ls -l /alice``).

Both speak the binary channel (``net.client.SyncClient``) to the server found by
``net.discovery`` (the environment, then a running jBox, then central services) and print
what alien.py prints: each result's ``message``, the error on stderr, and the server's exit
code as their own. ``-json`` prints the reply in JAliEn's JSON shape instead.

The shell keeps a readline history in ``<jalien home>/history``, completes command names
(from ``commandlist``) and remote paths (from ``ls -F``, when the server has ``ls``; no
completion otherwise), shows ``jsh: [user@site] /cwd/ >``, and turns Ctrl-C during a command
into a Cancel for the server (the shell stays). A lost connection is looked for again before
the next command, so a restarted jBox is picked up; so are credentials about to end (a
token the jBox renewed meanwhile): a connection ends with its credential (the server closes
it at the notAfter), so the shell takes fresh ones from discovery a minute before.
A server that refuses the credential says why: that is printed, with exit code 13.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cryptography import x509

from jalien.auth.certs import load_certs
from jalien.auth.errors import AuthError
from jalien.auth.files import write_file
from jalien.cli.credentials import read_password
from jalien.config import ConfigError, Settings, load_settings
from jalien.net import discovery
from jalien.net.client import ConnectionLost, Refused, SyncClient
from jalien.wire.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_NO_CONNECTION, RequestError
from jalien.wire.jalien_json import OutputMode, records, render_reply
from jalien.wire.messages import Reply

if TYPE_CHECKING:
    import ssl

LOCAL_COMMANDS = ("exit", "quit", "help", "token-init", "cp")


def client_side_args(command: str, args: list[str]) -> list[str]:
    """What the client does before sending: ``submit file:job.jdl`` sends the JDL text
    (``=<``), since central cannot read the user's disk."""
    if command == "submit" and args and args[0].startswith("file:"):
        path = args[0][len("file:") :]
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ShellError(f"cannot read {path}: {getattr(exc, 'strerror', exc)}", 2) from None
        return ["=<", text, *args[1:]]
    return args


def run_cp(args: list[str]) -> int:
    """cp inside the shell: the same code as ``jalien-bin cp`` (its own connection)."""
    from jalien.cli.cp_cmd import cp_command

    try:
        return cp_command(args)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code or 0)


class ShellError(Exception):
    def __init__(self, message: str, exitcode: int) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class Connection:
    """The binary connection of a shell: found by discovery, found again when lost."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        password_stdin: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env
        self.password_stdin = password_stdin
        self.connect_timeout = connect_timeout
        self.client: SyncClient | None = None
        self.endpoint: discovery.Endpoint | None = None
        self.credentials: discovery.Credentials | None = None
        self._fallbacks: Iterator[discovery.Credentials] | None = None
        self._context: ssl.SSLContext | None = None
        self._not_after = 0.0  # when the loaded credential ends (0: unknown)

    def _ssl_context(self):
        if self._context is None:
            try:
                if self._fallbacks is None:
                    self._fallbacks = discovery.credentials_in_order(self.env)
                creds = self.credentials or next(self._fallbacks)
                password = None
                if creds.needs_password():
                    password = read_password(
                        f"Grid certificate password ({creds.key}): ",
                        from_stdin=self.password_stdin,
                    )
                self._context = creds.context(discovery.ca_dir(self.settings, self.env), password)
            except AuthError as exc:
                raise ShellError(str(exc), 1) from None
            self.credentials = creds
            self._not_after = credential_end(creds)
        return self._context

    def _ending(self) -> bool:
        """Whether the loaded credential is within discovery's margin of its end (the server
        closes the connection at its notAfter): then fresh ones are looked for."""
        margin = discovery.MIN_LEFT.total_seconds()
        return self._context is not None and 0 < self._not_after < time.time() + margin

    def _renew(self) -> None:
        """Forget the credential and the connection: the next call discovers both again
        (the token file a jBox renewed, else the next credential in order)."""
        self.close()
        self.credentials = None
        self._fallbacks = None
        self._context = None
        self._not_after = 0.0

    def open(self) -> None:
        context = self._ssl_context()
        tried: list[str] = []
        for endpoint in discovery.candidates(self.settings, self.env):
            client = SyncClient(
                endpoint.host,
                endpoint.port,
                context,
                reconnect=False,
                connect_timeout=self.connect_timeout,
            )
            try:
                client.connect()
            except ConnectionLost as exc:
                client.close()
                what = {"env": "JALIEN_HOST", "jbox": "jBox", "central": "central services"}
                tried.append(f"{what[endpoint.source]}: {exc}")
                continue
            self.client, self.endpoint = client, endpoint
            return
        stale = discovery.stale_token_file(self.env)
        if stale is not None:
            tried.append(f"({stale} names a jBox that is not running)")
        raise ShellError("no connection: " + "; ".join(tried), EXIT_NO_CONNECTION)

    def call(self, command: str, args: Sequence[str], timeout: float | None = None) -> Reply:
        if self._ending():
            self._renew()
        fresh = self.client is None or not self.client.connected
        if fresh:
            self.close()
            self.open()
        assert self.client is not None
        try:
            return self.client.call(command, *args, timeout=timeout)
        except ConnectionLost:
            # a server that refuses the certificate closes a fresh connection before it
            # reads the request: then the next credential is tried, once per credential
            if not (fresh and self._next_credentials()):
                raise
        return self.call(command, args, timeout)

    def _next_credentials(self) -> bool:
        """Drop a refused token file and go on with the next credential, if any."""
        refused = self.credentials
        if refused is None or refused.kind != "token" or self._fallbacks is None:
            return False
        try:
            following = next(self._fallbacks)
        except (StopIteration, AuthError):
            return False
        print(
            f"jalien-bin: the server refused {refused.describe()}; trying {following.describe()}",
            file=sys.stderr,
        )
        self.close()
        self.credentials = following
        self._context = None
        return True

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None


def credential_end(creds: discovery.Credentials) -> float:
    """The notAfter of a credential's (first) certificate; 0 when it cannot be read."""
    try:
        data = creds.cert.read_bytes() if creds.cert is not None else creds.cert_pem
        return x509.load_pem_x509_certificates(data)[0].not_valid_after_utc.timestamp()
    except (OSError, ValueError, IndexError):
        return 0.0


def render(reply: Reply, json_out: bool, out: TextIO, err: TextIO) -> int:
    """Print a reply as alien.py does; the exit code is the server's."""
    if json_out:
        out.write(json.dumps(json.loads(render_reply(reply)), indent=2) + "\n")
        return reply.exitcode
    for record in records(reply, OutputMode.ALL):
        if "message" in record:
            text = record["message"].rstrip("\n")
        else:
            text = " ".join(f"{k}={v}" for k, v in record.items())
        out.write(text + "\n")
    if reply.error:
        err.write(reply.error.rstrip("\n") + "\n")
    out.flush()
    return reply.exitcode


def token_init(connection: Connection, args: Sequence[str], out: TextIO) -> int:
    """alien.py's token-init: a new token written where alien.py and jalien look for it."""
    reply = connection.call("token", list(args))
    if reply.exitcode or not reply.results:
        raise ShellError(reply.error or "no token in the reply", reply.exitcode or 1)
    record = reply.results[0]
    cert_path, key_path = discovery.token_cert_paths(connection.env)
    try:
        write_file(key_path, str(record["tokenkey"]).encode(), 0o400, overwrite=True)
        write_file(cert_path, str(record["tokencert"]).encode(), 0o440, overwrite=True)
        until = load_certs(cert_path)[0].not_valid_after_utc
    except (AuthError, KeyError) as exc:
        raise ShellError(f"cannot write the token: {exc}", 1) from None
    out.write(f"token written to {cert_path} and {key_path}, valid until {until:%c} UTC\n")
    return 0


def _split_json(words: list[str]) -> tuple[list[str], bool]:
    json_out = "-json" in words
    return [w for w in words if w != "-json"], json_out


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise ShellError(str(exc), 2) from None


def one_shot(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``jalien-bin [-json] <command> [args]``: one command, the server's exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    words, json_out = _split_json(list(argv))
    if not words:
        err.write("jalien-bin: which command? (try jalien-bin commandlist)\n")
        return EXIT_INVALID
    connection: Connection | None = None
    try:
        connection = Connection(_settings())
        if words[0] == "token-init":
            return token_init(connection, words[1:], out)
        args = client_side_args(words[0], words[1:])
        return render(connection.call(words[0], args), json_out, out, err)
    except ShellError as exc:
        err.write(f"jalien-bin: {exc}\n")
        return exc.exitcode
    except Refused as exc:  # the server's reason, not the command's failure
        err.write(f"jalien-bin: {exc}\n")
        return exc.exitcode
    except RequestError as exc:
        err.write(f"jalien-bin: {words[0]}: {exc}\n")
        return exc.exitcode
    except KeyboardInterrupt:
        err.write("jalien-bin: interrupted (the server was told to stop)\n")
        return EXIT_INTERRUPTED
    finally:
        if connection is not None:
            connection.close()


class Shell:
    """The interactive loop; *read* is ``input`` (readline) or a line reader for scripts."""

    def __init__(self, connection: Connection, out: TextIO, err: TextIO) -> None:
        self.connection = connection
        self.out = out
        self.err = err
        self.commands: list[str] = []
        self.user = self.site = ""
        self.cwd = "/"
        self.exitcode = 0
        self._listings: dict[str, tuple[float, list[str]]] = {}

    def prompt(self) -> str:
        who = f"{self.user}@{self.site}" if self.site else self.user
        return f"jsh: [{who}] {self.cwd} > "

    def _remember(self, reply: Reply) -> None:
        meta = reply.metadata
        self.user = meta.get("user", self.user)
        self.site = meta.get("site", self.site)
        self.cwd = meta.get("currentdir", self.cwd) or self.cwd

    def start(self) -> None:
        reply = self.connection.call("commandlist", [])
        self._remember(reply)
        self.commands = sorted(
            {str(r.get("commandlist", r.get("message", ""))) for r in reply.results} - {""}
        )

    def run_line(self, line: str) -> bool:
        """Run one line; False when the shell should end."""
        try:
            words = shlex.split(line, comments=False)
        except ValueError as exc:
            self.err.write(f"jsh: {exc}\n")
            self.exitcode = EXIT_INVALID
            return True
        if not words:
            return True
        words, json_out = _split_json(words)
        command, args = words[0], words[1:]
        if command in ("exit", "quit"):
            return False
        try:
            if command == "help":
                self.out.write("commands: " + " ".join(self.commands + list(LOCAL_COMMANDS)))
                self.out.write("\n")
                self.exitcode = 0
            elif command == "token-init":
                self.exitcode = token_init(self.connection, args, self.out)
            elif command == "cp":
                self.exitcode = run_cp(args)
            else:
                reply = self.connection.call(command, client_side_args(command, args))
                self._remember(reply)
                self.exitcode = render(reply, json_out, self.out, self.err)
        except KeyboardInterrupt:
            self.err.write(" cancelled\n")  # after the terminal's own ^C
            self.exitcode = EXIT_INTERRUPTED
        except (ShellError, Refused) as exc:
            self.err.write(f"jsh: {exc}\n")
            self.exitcode = exc.exitcode
        except RequestError as exc:  # ConnectionLost, timeouts
            self.err.write(f"jsh: {command}: {exc}\n")
            self.exitcode = exc.exitcode
        self.out.flush()
        return True

    # -- completion
    def complete_words(self, line: str, begidx: int, text: str) -> list[str]:
        if not line[:begidx].strip():
            local = [c for c in LOCAL_COMMANDS if c not in self.commands]
            return [c + " " for c in self.commands + local if c.startswith(text)]
        return self._paths(text)

    def _paths(self, text: str) -> list[str]:
        if "ls" not in self.commands:
            return []
        directory, _, prefix = text.rpartition("/")
        where = directory + "/" if "/" in text else ""
        names = self._listing(where)
        # a directory stays open for the next Tab; a file ends the word
        return [
            where + name + ("" if name.endswith("/") else " ")
            for name in names
            if name.startswith(prefix)
        ]

    def _listing(self, where: str) -> list[str]:
        key = where if where.startswith("/") else self.cwd + where
        cached = self._listings.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            reply = self.connection.call("ls", ["-F", where] if where else ["-F"], timeout=3)
        except (RequestError, ShellError, KeyboardInterrupt):
            return []
        if reply.exitcode:
            return []
        names = []
        for record in records(reply, OutputMode.ALL):
            name = str(record.get("name") or record.get("message", "")).strip()
            base = name.rstrip("/").rsplit("/", 1)[-1]
            if base:
                names.append(base + ("/" if name.endswith("/") else ""))
        self._listings[key] = (time.monotonic() + 5, names)
        return names


def _setup_readline(shell: Shell, history: str) -> Callable[[], None]:
    """History and completion; a no-op where readline is missing."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Python built without readline
        return lambda: None
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(5000)
    readline.set_completer_delims(" \t\n;|&")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        nonlocal matches
        if state == 0:
            try:
                line, begidx = readline.get_line_buffer(), readline.get_begidx()
                matches = shell.complete_words(line, begidx, text)
            except Exception:  # completion must never break the shell
                matches = []
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)

    def save() -> None:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(history), exist_ok=True)
            readline.write_history_file(history)

    return save


def shell_command(argv: Sequence[str]) -> int:
    """``jalien-bin shell [--password-stdin]``: interactive on a terminal; from a pipe it
    runs the lines it reads and returns the last exit code."""
    args = list(argv)
    if any(a in ("-h", "--help") for a in args):
        print("usage: jalien-bin shell [--password-stdin]   (commands: try `help` inside)")
        return 0
    unknown = [a for a in args if a != "--password-stdin"]
    if unknown:
        print(f"jalien-bin shell: unknown option {unknown[0]}", file=sys.stderr)
        return 2
    try:
        settings = _settings()
        connection = Connection(settings, password_stdin="--password-stdin" in args)
        shell = Shell(connection, sys.stdout, sys.stderr)
        shell.start()
    except ShellError as exc:
        print(f"jalien-bin: {exc}", file=sys.stderr)
        return exc.exitcode
    except RequestError as exc:
        print(f"jalien-bin: {exc}", file=sys.stderr)
        return exc.exitcode
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        if not sys.stdin.isatty():
            for line in sys.stdin:
                if not shell.run_line(line):
                    break
            return shell.exitcode
        # Ctrl-C cancels the command, at the prompt it starts a new line: whatever SIGINT's
        # disposition at start (a background job of a script inherits it ignored, and Python
        # then leaves it ignored), the interactive shell takes SIGINT itself
        signal.signal(signal.SIGINT, signal.default_int_handler)
        save = _setup_readline(shell, str(settings.home_path / "history"))
        try:
            while True:
                try:
                    line = input(shell.prompt())
                except EOFError:
                    print()
                    break
                except KeyboardInterrupt:
                    print()
                    continue
                if not shell.run_line(line):
                    break
        finally:
            save()
        return shell.exitcode
    finally:
        connection.close()
