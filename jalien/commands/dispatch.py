"""The one place where a request becomes a reply: find the command, check the policy
(``jalien.auth.policy``: the command's action for the session's identity kind, and that the
credential is still good), run it, and map any exception to JAliEn's exit code and error
text. Serves both personalities (it is the net.Handler of jcentral)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jalien.auth import policy
from jalien.auth.errors import AuthError
from jalien.commands.session import Session
from jalien.commands.table import CommandTable, Result
from jalien.net.audit import bound_args
from jalien.net.identity import Identity
from jalien.wire.errors import EXIT_NOT_FOUND, EXIT_PERMISSION, EXIT_REMOTE_IO, RequestError
from jalien.wire.messages import Reply, Request

log = logging.getLogger("jalien.commands")

# options JAliEn's commander takes out before a command parses its own
GLOBAL_FLAGS = frozenset({"-nomsg", "-nokeys", "-silent"})
HELP_FLAGS = frozenset({"-h", "--h", "-help", "--help"})

CredentialCheck = Callable[[Identity], "str | Awaitable[str]"]
"""Whether a credential still holds beyond its signature and dates (a job token: its job is
active): "" when it does, else the reason; an awaitable only when it must ask a database."""
Prepare = Callable[[Session], "Awaitable[None] | None"]
"""What a session needs before its first data command (its home in the catalogue): None
when it is ready, else the work to wait for."""


class Dispatcher:
    def __init__(
        self,
        table: CommandTable,
        *,
        site: str,
        credential_check: CredentialCheck | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.table = table
        self.site = site
        self.sessions: set[Session] = set()
        self.credential_check = credential_check
        self.prepare = prepare

    # -- net.Handler
    def open_session(self, identity: Identity, push: Any, *, personality: str) -> Session:
        session = Session(
            identity=identity,
            cwd=identity.home or "/",
            site=self.site,
            personality=personality,
            push=push,
        )
        self.sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        session.closed = True
        self.sessions.discard(session)

    def describe_session(self, session: Session) -> dict[str, str]:
        return session.metadata()

    def dispatch(
        self, session: Session, request: Request
    ) -> Reply | Awaitable[Reply] | AsyncIterator[Reply]:
        command = self.table.get(request.command)
        if command is None:
            return self._finish(
                session,
                Reply(
                    exitcode=EXIT_NOT_FOUND,
                    error=f"No such file or directory : Command [{request.command}] not found!",
                ),
            )
        identity = session.identity
        action = policy.resolve(command.action, request.options)
        if not policy.allows(identity, action):
            return self._refuse(session, policy.refusal(identity, action, command.name))
        pending: Awaitable[str] | None = None
        if self.credential_check is not None:
            problem = self.credential_check(identity)
            if problem:
                if type(problem) is str:
                    return self._refuse(session, problem)
                pending = problem  # type: ignore[assignment]
        setup: Awaitable[None] | None = None
        if command.prepares and not session.prepared and self.prepare is not None:
            setup = self.prepare(session)
            if setup is None:
                session.prepared = True
        if pending is not None or setup is not None:
            return self._later(session, request, command, pending, setup)
        return self._run(session, request, command)

    def _refuse(self, session: Session, why: str) -> Reply:
        return self._finish(session, Reply(exitcode=EXIT_PERMISSION, error=why))

    async def _later(
        self,
        session: Session,
        request: Request,
        command: Any,
        pending: Awaitable[str] | None,
        setup: Awaitable[None] | None,
    ) -> AsyncIterator[Reply]:
        """The rare path with a wait before the command (the credential check asks the
        database, a session's first data command makes its home): the answer is a stream
        (it may be one), a single Reply being a stream of one."""
        try:
            problem = await pending if pending is not None else ""
            if problem:
                yield self._refuse(session, problem)
                return
            if setup is not None:
                await setup
                session.prepared = True
        except Exception as exc:
            yield self._finish(session, self._error(request, exc))
            return
        result = self._run(session, request, command)
        if type(result) is Reply:
            yield result
        elif inspect.isawaitable(result):
            yield await result
        else:
            async for page in result:  # type: ignore[union-attr]
                yield page

    def _run(
        self, session: Session, request: Request, command: Any
    ) -> Reply | Awaitable[Reply] | AsyncIterator[Reply]:
        if command.raw:
            return self._raw(session, request, command.fn)
        options = request.options
        if options and any(o.startswith("-") for o in options):  # global options, out here
            options = [o for o in options if o not in GLOBAL_FLAGS]
            if any(o in HELP_FLAGS for o in options):
                usage = f"usage: {command.name}: {command.summary}"
                return self._finish(session, [{"message": usage}])
            for option in options:
                if option.startswith("-pwd="):
                    session.cwd = option[len("-pwd=") :].rstrip("/") + "/"
            options = [o for o in options if not o.startswith(("-pwd=", "-debug="))]
        else:
            options = list(options)
        try:
            spec = command.args
            result = command.fn(session, spec.parse(options) if spec is not None else options)
        except Exception as exc:
            return self._finish(session, self._error(request, exc))
        if type(result) is list or type(result) is Reply:  # the hot path: answered at once
            return self._finish(session, result)
        if inspect.isawaitable(result):
            return self._await(session, request, result)
        if hasattr(result, "__anext__"):
            return self._stream(session, request, result)
        return self._finish(session, result)

    def _raw(self, session: Session, request: Request, fn: Any) -> Reply | Awaitable[Reply]:
        """A raw command: its Reply as it is on the binary channel (JSON clients still get
        JAliEn's metadata); exceptions are mapped as for any command."""
        try:
            reply = fn(session, request)
        except Exception as exc:
            return self._finish(session, self._error(request, exc))
        if type(reply) is not Reply:
            return self._await(session, request, reply)
        if session.personality == "websocket":
            return self._finish(session, reply)
        return reply

    async def _stream(
        self, session: Session, request: Request, pages: AsyncIterator[Any]
    ) -> AsyncIterator[Reply]:
        """A streamed answer: each page gets the metadata; an error ends it with a Reply
        carrying the exit code (pages already sent stay sent); no page at all is one empty page."""
        empty = True
        try:
            async for page in pages:
                empty = False
                yield self._finish(session, page)
        except Exception as exc:
            yield self._finish(session, self._error(request, exc))
            return
        if empty:  # an empty directory, a find with no match: still one answer
            yield self._finish(session, [])

    async def _await(self, session: Session, request: Request, pending: Awaitable[Any]) -> Reply:
        try:
            result = await pending
        except Exception as exc:
            return self._finish(session, self._error(request, exc))
        return self._finish(session, result)

    def _finish(self, session: Session, result: Result) -> Reply:
        reply = result if type(result) is Reply else Reply(results=result)  # type: ignore[arg-type]
        metadata = session.metadata()
        if reply.metadata:
            metadata.update(reply.metadata)
        reply.metadata = metadata
        return reply

    @staticmethod
    def _error(request: Request, exc: Exception) -> Reply:
        if isinstance(exc, RequestError):
            return Reply(exitcode=exc.exitcode, error=str(exc))
        if isinstance(exc, AuthError):
            return Reply(exitcode=EXIT_PERMISSION, error=str(exc))
        words = bound_args(request.command, request.options)  # no envelope, no whole JDL
        log.error("command %s %s failed", request.command, words, exc_info=exc)
        return Reply(
            exitcode=EXIT_REMOTE_IO,
            error=f"Error executing command [{request.command}]: {type(exc).__name__}: {exc}",
        )
