"""JAliEn's errors: an errno number and ``"<standard text> : <detail>"`` as the error text
(JAliEn's ErrNo), so that alien.py users see what they saw before."""

from __future__ import annotations

from jalien.wire.errors import (
    EACCES,
    EBADFD,
    EBADR,
    EEXIST,
    EINVAL,
    EIO,
    EISDIR,
    ENODATA,
    ENOENT,
    ENOLINK,
    ENOTDIR,
    ENOTEMPTY,
    EPERM,
    EREMOTEIO,
    RequestError,
)

__all__ = [  # the numbers live in jalien.wire.errors, the one table of exit codes
    "EACCES", "EBADFD", "EBADR", "EEXIST", "EINVAL", "EIO", "EISDIR", "ENODATA", "ENOENT",
    "ENOLINK", "ENOTDIR", "ENOTEMPTY", "EPERM", "EREMOTEIO", "TEXT", "jalien_error",
]  # fmt: skip

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


def jalien_error(code: int, detail: str = "") -> RequestError:
    text = TEXT.get(code, "Error")
    return RequestError(f"{text} : {detail}" if detail else text, code)
