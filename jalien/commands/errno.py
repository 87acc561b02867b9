"""JAliEn's errors: an errno number and ``"<standard text> : <detail>"`` as the error text
(JAliEn's ErrNo), so that alien.py users see what they saw before."""

from __future__ import annotations

from jalien.wire.errors import RequestError

EPERM, ENOENT, EIO, EACCES, EEXIST = 1, 2, 5, 13, 17
ENOTDIR, EISDIR, EINVAL, ENOTEMPTY = 20, 21, 22, 39
ENODATA, ENOLINK, EBADFD, EREMOTEIO = 61, 67, 77, 121
EBADR = 53

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
