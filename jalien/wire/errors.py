"""The one table of exit codes (tests/wire/test_exit_codes.py: no other module defines
one), and the exception a command raises to answer with an exit code; mapped to a Reply in
one place (jalien.commands.dispatch).

A command's exit code travels in its Reply and becomes the exit status of ``jalien-bin
<command>``, so both kinds share one number space: JAliEn's errno-like codes, and a few
that only a process of ``jalien-bin`` ends with.
"""

from __future__ import annotations

# JAliEn-compatible exit codes (errno-like, as JAliEn's commands set them)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 2
EXIT_PERMISSION = 13
EXIT_EXISTS = 17
EXIT_INVALID = 22
EXIT_BUSY = 11  # EAGAIN: an identity past its bound of requests in flight (net.fairness)
EXIT_TIMEOUT = 62
EXIT_UNKNOWN_COMMAND = 64
EXIT_TOO_BIG = 90
EXIT_NO_CONNECTION = 107
EXIT_REMOTE_IO = 121  # JAliEn's EREMOTEIO for a command that failed unexpectedly
EXIT_QUOTA = 122  # EDQUOT: over a file or job quota (storage.quota, jobs.admission)

# how a jalien-bin process ends besides a command's code
EXIT_USAGE = 2  # bad arguments or configuration (argparse's code; a role's ConfigError)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: the shell or a command stopped by Ctrl-C

# JAliEn's ErrNo numbers (jalien.commands.errno gives each its standard text)
EPERM, ENOENT, EIO, EACCES, EEXIST = 1, 2, 5, 13, 17
ENOTDIR, EISDIR, EINVAL, ENOTEMPTY = 20, 21, 22, 39
ENODATA, ENOLINK, EBADFD, EREMOTEIO = 61, 67, 77, 121
EBADR = 53

# JAliEn's ErrNo texts: an error reads "<text> : <detail>" (jalien_error)
TEXT = {
    EPERM: "Operation not permitted",
    ENOENT: "No such file or directory",
    EIO: "Input/output error",
    EACCES: "Permission denied",
    EEXIST: "File exists",
    ENOTDIR: "Not a directory",
    EISDIR: "Is a directory",
    EINVAL: "Invalid argument",
    ENOTEMPTY: "Directory not empty",
    ENODATA: "No data available",
    ENOLINK: "Link has been severed",
    EBADFD: "File descriptor in bad state",
    EREMOTEIO: "Remote I/O error",
    EBADR: "Invalid request descriptor",
}


class RequestError(Exception):
    """A request that cannot be served; *exitcode* and the message go back to the client."""

    def __init__(self, message: str, exitcode: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exitcode = exitcode


def jalien_error(code: int, detail: str = "") -> RequestError:
    """JAliEn's error for errno *code*: its standard text, then the detail."""
    text = TEXT.get(code, "Error")
    return RequestError(f"{text} : {detail}" if detail else text, code)
