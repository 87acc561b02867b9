"""JAliEn's errors: an errno number and ``"<standard text> : <detail>"`` as the error text
(JAliEn's ErrNo), so that alien.py users see what they saw before. The numbers, their texts
and ``jalien_error`` live in jalien.wire.errors (services raise them too); this module is
the commands' name for them."""

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
    TEXT,
    jalien_error,
)

__all__ = [  # the numbers live in jalien.wire.errors, the one table of exit codes
    "EACCES", "EBADFD", "EBADR", "EEXIST", "EINVAL", "EIO", "EISDIR", "ENODATA", "ENOENT",
    "ENOLINK", "ENOTDIR", "ENOTEMPTY", "EPERM", "EREMOTEIO", "TEXT", "jalien_error",
]  # fmt: skip
