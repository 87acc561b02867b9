"""The exception a command raises to answer with an exit code; mapped to a Reply in one
place (jalien.commands.dispatch)."""

from __future__ import annotations

# JAliEn-compatible exit codes (errno-like, as JAliEn's commands set them)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 2
EXIT_PERMISSION = 13
EXIT_EXISTS = 17
EXIT_INVALID = 22
EXIT_TIMEOUT = 62
EXIT_UNKNOWN_COMMAND = 64
EXIT_TOO_BIG = 90
EXIT_NO_CONNECTION = 107


class RequestError(Exception):
    """A request that cannot be served; *exitcode* and the message go back to the client."""

    def __init__(self, message: str, exitcode: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exitcode = exitcode
