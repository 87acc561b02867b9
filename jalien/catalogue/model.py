"""What the catalogue stores: entries (files, directories, collections, links), replicas
of a GUID on storage elements, and the storage elements themselves."""

from __future__ import annotations

import time
import uuid

import msgspec

FILE, DIRECTORY, COLLECTION, LINK = "f", "d", "c", "l"


class Entry(msgspec.Struct, gc=False):
    """One LFN. *dir* ends with '/'; a directory's *name* has no trailing '/'. The fields
    after *dir* are in wire.messages.DirEntry's order, so rows convert without copies."""

    dir: str
    name: str
    type: str = FILE
    perm: str = "755"
    owner: str = ""
    gowner: str = ""
    size: int = 0
    ctime: int = 0  # milliseconds since the epoch
    md5: str = ""
    guid: str = ""
    jobid: int = 0

    @property
    def lfn(self) -> str:
        """The full LFN; directories end with '/' as AliEn prints them."""
        if self.name == "/":
            return "/"
        path = self.dir + self.name
        return path + "/" if self.type == DIRECTORY else path

    @property
    def path(self) -> str:
        """The full LFN without a trailing '/'."""
        return "/" if self.name == "/" else self.dir + self.name

    @property
    def is_dir(self) -> bool:
        return self.type == DIRECTORY


class Replica(msgspec.Struct, kw_only=True, frozen=True):
    guid: str
    se: str
    pfn: str


class StorageElement(msgspec.Struct, kw_only=True):
    name: str  # e.g. ALICE::CERN::EOS
    url: str  # protocol URL prefix, e.g. root://eos.cern.ch:1094//eos/alice/grid
    site: str = ""
    qos: list[str] = []  # tags such as "disk", "tape", "legoinput"
    capacity: int = 0  # bytes, 0 = unknown
    used: int = 0
    protocols: list[str] = []
    number: int = 0  # AliEn's seNumber
    # other URLs of this SE (another protocol): the same path below each names the same file
    # (the embedded SE: root://h:8094//se and https://h:8099/se)
    endpoints: list[str] = []


def now_ms() -> int:
    return int(time.time() * 1000)


def new_guid() -> str:
    """A time-based (version 1) UUID, as AliEn's GUIDs: they sort roughly by creation."""
    return str(uuid.uuid1())
