"""``token``: a token certificate for the caller, as JAliEn's command issues it.

    token [-t user|job|jobagent|host] [-u <login>] [-v <days>] [-hours <hours>]
          [-jobid <id>] [-hostname <fqdn>]

The reply's record carries ``tokencert`` and ``tokenkey`` (PEM text), ``dn`` and ``expires``;
its ``message`` is JAliEn's text (DN, expiry, then both PEM blocks). ``-hours`` is jalien's
addition for short-lived tokens (jBox, tests); JAliEn only knows ``-v`` in whole days.
Which kinds of token an identity may ask for is the policy's (``jalien.auth.policy``: the
command's action is ``token-<kind>``). What stays here is per request: a user token for oneself
(an admin for anyone); a job token only for a job that is active, owned by the user named and
matched to the JobAgent asking (``JobTokens``, the jobs service's rule), which is then told
the new token's serial (only the tokens issued for a job's current run work).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from jalien.auth import policy
from jalien.auth.certs import certs_pem, dn_of
from jalien.auth.errors import AuthError
from jalien.auth.policy import Action
from jalien.auth.tokens import (
    TokenAuthority,
    TokenKind,
    TokenSubject,
    token_key_pem,
    token_lifetime,
)
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.net.identity import Identity
from jalien.wire.errors import EXIT_FAILED, EXIT_INVALID, EXIT_PERMISSION, RequestError
from jalien.wire.messages import Record

USAGE = """usage: token [-options]
options:
    -u <username>            switch to another role of yours
    -v <validity (days)>     default depends on token type
    -hours <validity>        validity in hours (jalien)
    -t <tokentype>           can be one of: job, jobagent, host, user (default)
    -jobid <job DN extension>  expected to be present in a job token
    -hostname <FQDN>         required for a host certificate"""

_WITH_VALUE = {"-u", "-v", "-hours", "-t", "-jobid", "-hostname"}
_IGNORED = {"-nomsg", "-nokeys", "-f"}


def _options(args: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    words = iter(args)
    for word in words:
        if word in _IGNORED:
            continue
        if word in ("-h", "-help", "--help"):
            options["help"] = ""
            continue
        name = word.split("=", 1)[0]
        if name not in _WITH_VALUE:
            raise RequestError(f"token: unknown option {word}\n{USAGE}", EXIT_INVALID)
        if "=" in word:
            options[name] = word.split("=", 1)[1]
            continue
        value = next(words, None)
        if value is None:
            raise RequestError(f"token: option {word} needs a value", EXIT_INVALID)
        options[name] = value
    return options


def _kind(options: dict[str, str]) -> TokenKind:
    kind = TokenKind.USER
    if "-hostname" in options:
        kind = TokenKind.HOST
    if "-jobid" in options:
        kind = TokenKind.JOB
    if "-t" in options:
        try:
            kind = TokenKind(options["-t"])
        except ValueError:
            raise RequestError(f"Unknown token type {options['-t']}", EXIT_INVALID) from None
    return kind


_ACTIONS = {
    TokenKind.USER: Action.TOKEN_USER,
    TokenKind.JOB: Action.TOKEN_JOB,
    TokenKind.JOBAGENT: Action.TOKEN_JOBAGENT,
    TokenKind.HOST: Action.TOKEN_HOST,
}


class _TokenAction:
    """The policy action of a ``token`` request: by the kind of token asked for (a request
    the parser refuses is checked as a user token; it fails in the command)."""

    actions = tuple(_ACTIONS.values())

    def __call__(self, args: list[str]) -> Action:
        try:
            return _ACTIONS[_kind(_options(args))]
        except RequestError:
            return Action.TOKEN_USER


TOKEN_ACTION = _TokenAction()


class JobTokens(Protocol):
    """The jobs service's rule for ``token -t job``."""

    def check_job_token(self, identity: Identity, job_id: str, user: str) -> Awaitable[None]:
        """Whether *identity* may have a job token of *user* for *job_id*: raises
        RequestError with the reason when not."""
        ...

    def job_token_issued(self, job_id: str, serial: int) -> None:
        """A token for the job's current run was issued."""
        ...


def _number(options: dict[str, str], name: str) -> float | None:
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise RequestError(f"token: {name} needs a positive number, got {raw!r}", EXIT_INVALID)
    return value


class TokenCommands:
    """The ``token`` command of central services; *find_login* maps a login to its account."""

    def __init__(
        self,
        table: CommandTable,
        authority: TokenAuthority,
        find_login: Callable[[str], Identity],
        job_tokens: JobTokens | None = None,
    ) -> None:
        self.table = table
        self.authority = authority
        self.find_login = find_login
        self.job_tokens = job_tokens

    def register(self) -> None:
        self.table.add(
            "token",
            self.token,
            "issue a token certificate (tokencert, tokenkey)",
            action=TOKEN_ACTION,
        )

    async def token(self, session: Session, args: list[str]) -> list[Record]:
        options = _options(args)
        if "help" in options:
            return [{"message": USAGE}]
        subject, requested, admin = self._request(session.identity, options)
        if subject.kind is TokenKind.JOB and not admin:
            if self.job_tokens is None:
                raise RequestError("job tokens are issued with matched jobs only", EXIT_PERMISSION)
            await self.job_tokens.check_job_token(
                session.identity, subject.extension, subject.login
            )
        limit = (
            dt.datetime.fromtimestamp(session.identity.expires, dt.UTC)
            if session.identity.expires
            else None
        )
        try:
            not_after, notes = token_lifetime(subject.kind, requested, admin=admin, limit=limit)
        except AuthError as exc:
            raise RequestError(f"token: {exc}", EXIT_PERMISSION) from None
        return await self._issue(subject, not_after, notes)

    def _request(
        self, identity: Identity, options: dict[str, str]
    ) -> tuple[TokenSubject, dt.timedelta | None, bool]:
        admin = policy.is_admin(identity)
        kind = _kind(options)
        hours, days = _number(options, "-hours"), _number(options, "-v")
        requested = None
        if hours is not None:
            requested = dt.timedelta(hours=hours)
        elif days is not None:
            requested = dt.timedelta(days=days)
        user = options.get("-u", "")
        if kind is TokenKind.USER:
            login = self._switch(identity, user, admin) if user else identity.login
            return TokenSubject(kind, login=login, requester=identity.login), requested, admin
        if kind is TokenKind.JOB:
            job_id = options.get("-jobid", "")
            if not job_id:
                raise RequestError(
                    "You should pass a job extension for this type of certificate request",
                    EXIT_INVALID,
                )
            if not user:
                raise RequestError(
                    "You also have to pass the user for which to run this job id", EXIT_INVALID
                )
            self._known(user)
            return TokenSubject(kind, login=user, extension=job_id), requested, admin
        if kind is TokenKind.JOBAGENT:
            return TokenSubject(kind, login="jobagent"), requested, admin
        host = options.get("-hostname", "").strip()
        if not host:
            raise RequestError(
                "You must indicate the hostname for which to issue the certificate!",
                EXIT_INVALID,
            )
        if "." not in host or "/" in host:
            raise RequestError(f"Please pass a FQDN as hostname instead of `{host}`", EXIT_INVALID)
        return TokenSubject(kind, extension=host), requested, admin

    def _known(self, login: str) -> Identity:
        try:
            return self.find_login(login)
        except AuthError:
            raise RequestError(f"User {login} cannot be found. Abort", EXIT_INVALID) from None

    def _switch(self, identity: Identity, user: str, admin: bool) -> str:
        if user != identity.login and not admin:
            raise RequestError(f"Switching user {identity.login} to [{user}] failed", EXIT_FAILED)
        return self._known(user).login

    async def _issue(
        self, subject: TokenSubject, not_after: dt.datetime, notes: list[str]
    ) -> list[Record]:
        # an EC token is ~0.1 ms, but an RSA token CA's signature is not: off the loop
        cert, key = await asyncio.to_thread(self.authority.issue, subject, not_after)
        if subject.kind is TokenKind.JOB and self.job_tokens is not None:
            self.job_tokens.job_token_issued(subject.extension, cert.serial_number)
        cert_pem = certs_pem(cert).decode()
        key_pem = token_key_pem(key).decode()
        dn = dn_of(cert)
        expires = cert.not_valid_after_utc
        lines = [*notes, f"DN: {dn}", f"Expires: {expires:%Y-%m-%d %H:%M:%S} UTC", ""]
        return [
            {
                "tokencert": cert_pem,
                "tokenkey": key_pem,
                "dn": dn,
                "expires": str(int(expires.timestamp())),
                "message": "\n".join(lines) + "\n" + cert_pem + key_pem,
            }
        ]
