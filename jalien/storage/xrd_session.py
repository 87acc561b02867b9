"""One XRootD connection of the embedded SE as a state machine without I/O: bytes in,
events out; answers in, bytes out (the shape of wire/channel.py). xrd_server.py owns the
socket, the files and the envelope checks; this module owns the protocol's rules:

- the handshake comes first (anything else closes the connection), then ``kXR_protocol``
  and ``kXR_login``; a request other than protocol/ping before login is refused;
- the session answers by itself what needs no file: handshake, protocol, login, ping,
  endsess, ``kXR_query`` of the configuration, and ``kXR_Unsupported`` for requests the SE
  does not implement (an ``Answer`` event: the bytes to send);
- the requests on files become typed events (``Open``, ``Read``, ``ReadV``, ``Write``,
  ``Sync``, ``Close``, ``Stat``, ``Checksum``, ``Rm``, ``Dirlist``, ``Locate``); a
  malformed one becomes an ``Answer`` with ``kXR_ArgInvalid``;
- the table of open files (handle -> whatever the server keeps per file).

The advertised protocol is 5.1.0 (0x510), just below kXR_PROTPGRWVERSION (0x511), and
without ``kXR_suppgrw``: XRootD 5 and 6 clients (xrdcp decides by the version, XrdCl::File
by the flag) then read and write with plain kXR_read/kXR_write, so no CRC32C pages are
needed; TLS, extended attributes and request signing need no more than 5.0.0. A
``ProtocolError`` from ``receive`` means the connection must close.
"""

from __future__ import annotations

import os
import stat
from typing import Generic, TypeVar

import msgspec

from jalien._fast import xrdconst as X
from jalien._fast import xrdproto

PROTOCOL_VERSION = 0x00000510  # 5.1.0: below pgread/pgwrite (0x511)
SERVER_FLAGS = X.kXR_isServer  # no kXR_suppgrw: clients use kXR_read/kXR_write
READV_IOV_MAX = 1024  # elements in one readv
READV_IOR_MAX = 2097136  # bytes in one readv element (XRootD's own limit)
READV_MAX_TOTAL = 64 * 1024 * 1024  # bytes in one readv answer
CONFIG = {  # kXR_query kXR_Qconfig answers
    "chksum": "0:md5",
    "readv_iov_max": str(READV_IOV_MAX),
    "readv_ior_max": str(READV_IOR_MAX),
    "role": "server",
    "tpc": "0",
    "sitename": "jalien",
}

F = TypeVar("F")


class Answer(msgspec.Struct, frozen=True):
    data: bytes


class Open(msgspec.Struct, frozen=True):
    streamid: int
    path: str
    cgi: str
    options: int
    mode: int


class Read(msgspec.Struct, frozen=True):
    streamid: int
    fh: int
    offset: int
    length: int


class ReadV(msgspec.Struct, frozen=True):
    streamid: int
    chunks: list[tuple[int, int, int]]  # (fhandle, length, offset)


class Write(msgspec.Struct, frozen=True):
    streamid: int
    fh: int
    offset: int
    data: bytes


class Sync(msgspec.Struct, frozen=True):
    streamid: int
    fh: int


class Close(msgspec.Struct, frozen=True):
    streamid: int
    fh: int


class Stat(msgspec.Struct, frozen=True):
    streamid: int
    path: str  # "" when the request names an open file
    cgi: str
    fh: int


class Checksum(msgspec.Struct, frozen=True):
    streamid: int
    path: str
    cgi: str


class Rm(msgspec.Struct, frozen=True):
    streamid: int
    path: str
    cgi: str


class Dirlist(msgspec.Struct, frozen=True):
    streamid: int
    path: str
    cgi: str
    with_stat: bool


class Locate(msgspec.Struct, frozen=True):
    streamid: int


Event = (
    Locate | Answer | Open | Read | ReadV | Write | Sync | Close | Stat | Checksum | Rm | Dirlist
)

_UNSUPPORTED = {
    X.kXR_auth: "auth",
    X.kXR_chmod: "chmod",
    X.kXR_gpfile: "gpfile",
    X.kXR_mkdir: "mkdir",
    X.kXR_mv: "mv",
    X.kXR_chkpoint: "chkpoint",
    X.kXR_rmdir: "rmdir",
    X.kXR_set: "set",
    X.kXR_fattr: "fattr",
    X.kXR_prepare: "prepare",
    X.kXR_statx: "statx",
    X.kXR_bind: "bind",
    X.kXR_pgwrite: "pgwrite",
    X.kXR_truncate: "truncate",
    X.kXR_sigver: "sigver",
    X.kXR_pgread: "pgread",
    X.kXR_writev: "writev",
}


def stat_info(st: os.stat_result) -> bytes:
    """kXR_stat's answer: ``id size flags mtime`` (NUL-terminated)."""
    return stat_text(st).encode("ascii") + b"\x00"


def stat_text(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        flags = X.kXR_isDir | X.kXR_readable | X.kXR_xset
    elif stat.S_ISREG(st.st_mode):
        flags = X.kXR_readable
    else:
        flags = X.kXR_other
    return f"{st.st_ino} {st.st_size} {flags} {int(st.st_mtime)}"


class Session(Generic[F]):
    def __init__(self) -> None:
        self.decoder = xrdproto.RequestDecoder()
        self.logged_in = False
        self.files: dict[int, F] = {}
        self._next_fh = 0

    # -- bytes in, events out
    def receive(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Events of the complete requests in *data* (ProtocolError: close the connection)."""
        return [self._event(*request) for request in self.decoder.feed(data)]

    def _event(self, sid: int, rid: int, body: bytes, payload: bytes) -> Event:
        if rid == X.HANDSHAKE:
            return Answer(xrdproto.response(0, X.kXR_ok, _pack(PROTOCOL_VERSION, X.kXR_DataServer)))
        if rid == X.kXR_protocol:
            return Answer(xrdproto.response(sid, X.kXR_ok, _pack(PROTOCOL_VERSION, SERVER_FLAGS)))
        if rid == X.kXR_ping:
            return Answer(xrdproto.response(sid, X.kXR_ok))
        if rid == X.kXR_login:
            self.logged_in = True
            return Answer(xrdproto.response(sid, X.kXR_ok, os.urandom(16)))
        if not self.logged_in:
            return self.fail(sid, X.kXR_InvalidRequest, "log in first (kXR_login)")
        try:
            return self._file_event(sid, rid, body, payload)
        except ValueError as exc:
            return self.fail(sid, X.kXR_ArgInvalid, str(exc))

    def _file_event(self, sid: int, rid: int, body: bytes, payload: bytes) -> Event:
        if rid == X.kXR_read:
            fh, offset, length = xrdproto.read_args(body)
            if offset < 0 or length < 0:
                raise ValueError("negative read offset or length")
            return Read(sid, fh, offset, length)
        if rid == X.kXR_write:
            fh, offset = xrdproto.write_args(body)
            if offset < 0:
                raise ValueError("negative write offset")
            return Write(sid, fh, offset, payload)
        if rid == X.kXR_open:
            mode, options = xrdproto.open_args(body)
            path, cgi = _path(payload)
            return Open(sid, path, cgi, options, mode)
        if rid == X.kXR_close:
            return Close(sid, xrdproto.handle_arg(body))
        if rid == X.kXR_sync:
            return Sync(sid, xrdproto.handle_arg(body))
        if rid == X.kXR_readv:
            chunks = xrdproto.readv_list(payload)
            if len(chunks) > READV_IOV_MAX:
                raise ValueError(f"readv of {len(chunks)} elements (at most {READV_IOV_MAX})")
            if any(n > READV_IOR_MAX for _, n, _ in chunks):
                raise ValueError(f"readv element beyond {READV_IOR_MAX} bytes")
            if sum(n for _, n, _ in chunks) > READV_MAX_TOTAL:
                raise ValueError(f"readv of more than {READV_MAX_TOTAL} bytes")
            return ReadV(sid, chunks)
        if rid == X.kXR_stat:
            _, fh = xrdproto.stat_args(body)
            if not payload:
                return Stat(sid, "", "", fh)
            path, cgi = _path(payload)
            return Stat(sid, path, cgi, fh)
        if rid == X.kXR_query:
            return self._query(sid, body, payload)
        if rid == X.kXR_rm:
            path, cgi = _path(payload)
            return Rm(sid, path, cgi)
        if rid == X.kXR_dirlist:
            options = xrdproto.dirlist_args(body)
            path, cgi = _path(payload)
            return Dirlist(sid, path, cgi, bool(options & X.kXR_dstat))
        if rid == X.kXR_locate:  # the SE holds everything it serves: it answers itself
            return Locate(sid)
        if rid == X.kXR_endsess:
            return Answer(xrdproto.response(sid, X.kXR_ok))
        name = _UNSUPPORTED.get(rid, f"request {rid}")
        return self.fail(sid, X.kXR_Unsupported, f"jalien SE: {name} is not supported")

    def _query(self, sid: int, body: bytes, payload: bytes) -> Event:
        infotype, _ = xrdproto.query_args(body)
        if infotype == X.kXR_Qcksum:
            path, cgi = _path(payload)
            return Checksum(sid, path, cgi)
        if infotype == X.kXR_Qconfig:
            keys = payload.rstrip(b"\x00").decode("utf-8", "replace").split()
            answer = "".join(CONFIG.get(key, key) + "\n" for key in keys)  # as xrootd: no NUL
            return Answer(xrdproto.response(sid, X.kXR_ok, answer.encode()))
        return self.fail(
            sid, X.kXR_Unsupported, f"jalien SE: query type {infotype} is not supported"
        )

    # -- answers in, bytes out
    @staticmethod
    def ok(sid: int, body: bytes = b"") -> bytes:
        return xrdproto.response(sid, X.kXR_ok, body)

    @staticmethod
    def fail(sid: int, code: int, message: str) -> Answer:
        return Answer(xrdproto.error(sid, code, message))

    @staticmethod
    def locate_body(host: str, port: int) -> bytes:
        """kXR_locate's answer: this data server, read-write (``Sw<host>:<port>``)."""
        host = f"[{host}]" if ":" in host else host
        return f"Sw{host}:{port}".encode() + b"\x00"

    @staticmethod
    def open_body(fh: int, st: os.stat_result | None) -> bytes:
        """kXR_open's answer: the handle, and with kXR_retstat cpsize, cptype and the stat."""
        handle = fh.to_bytes(4, "big")
        if st is None:
            return handle
        return handle + bytes(8) + stat_info(st)

    # -- open files
    def add_file(self, file: F) -> int:
        for _ in range(len(self.files) + 1):
            self._next_fh = (self._next_fh + 1) & 0xFFFFFFFF
            if self._next_fh not in self.files:
                break
        self.files[self._next_fh] = file
        return self._next_fh

    def file(self, fh: int) -> F | None:
        return self.files.get(fh)

    def remove_file(self, fh: int) -> F | None:
        return self.files.pop(fh, None)


def _pack(a: int, b: int) -> bytes:
    return a.to_bytes(4, "big") + b.to_bytes(4, "big")


def _path(payload: bytes) -> tuple[str, str]:
    path, cgi = xrdproto.path_arg(payload)
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    return path, cgi


def cgi_value(cgi: str, key: str) -> str:
    """The value of *key* in a CGI string (``a=1&authz=...``); "" when absent."""
    for part in cgi.split("&"):
        name, _, value = part.partition("=")
        if name == key:
            return value
    return ""
