"""The typed contracts between the levels of a site (JobAgent -> VoBox -> central) and of
data access (the copy engine -> central).

Beside the envelope (``wire.messages``), what the site calls carry is typed here, as
msgspec Structs in one tagged union (``SiteMessage``), with the same evolution rules:
append only, every new field with a default, a tag never reused.

On the binary channel a typed site call carries its Struct as MessagePack in
``Request.data[0]`` and is answered in ``Reply.data`` (``encode``/``decode``)::

    getNumberWaitingJobs  data [JobOffer]      -> data [WaitingJobs]
    getMatchJob           data [JobOffer]      -> data [MatchedJob] (no job: data [];
                                                  an unknown packages digest: [PackagesWanted])
    setJobStatus          data [StatusChange]  -> Reply() (exit code 0)
    access                data [AccessRequest] -> data [AccessGrant, ...] (one per replica)
    relay.staged          data [StagedFiles]   -> data [StagedFiles] (the relay's own)
    relay.upload          data [StagedUpload]  -> Reply() (the relay's own)

Why ``data`` rather than a typed field of ``Request``/``Reply``: the envelope stays one
small union that ``net`` decodes, audits and forwards without knowing the site API (a VoBox
relays the agent's frames by rewriting their header only, and the audit log never holds a
job token), and the site API evolves on its own, as ``cache.*`` does with its bytes.

The JAliEn shapes - ``key=value`` words in requests and string maps (``Record``) in replies -
exist only at the edge: a JSON client (alien.py, ROOT) or a binary client of the previous
version sends words and gets records, byte for byte as before; ``offer_from_words``,
``status_from_words`` and the ``record``/``from_record`` methods are that edge. A typed
request is answered typed, a request with words is answered with records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import msgspec

from jalien.wire.messages import Record


class SiteApiError(ValueError):
    """Words or bytes that are no valid site message; the text says which and why."""


class JobOffer(msgspec.Struct, tag="offer", kw_only=True, omit_defaults=True):
    """What a JobAgent (or a VoBox sizing its submission) offers. ``None`` for packages or
    users: any. ``extra`` feeds ``other.X`` in a job's Requirements.

    Packages (``wire.packages``): a node with a package tree sends ``packages_digest`` on
    every request and the list itself (``packages``) only when central answered
    ``PackagesWanted`` (or ``WaitingJobs.packages_wanted``); ``packages=[]`` without a
    digest: no packages at all; neither: any (a previous-version agent)."""

    site: str = ""
    ce: str = ""
    ttl: int = 86400  # seconds the agent can still give a job
    cores: int = 1
    memory: int = 0  # bytes, 0: no limit said
    disk: int = 0  # bytes, 0: no limit said
    packages: list[str] | None = None
    users: list[str] | None = None
    partitions: list[str] = []
    node: str = ""  # the worker node's host name
    extra: dict[str, str] = {}
    packages_digest: str = ""  # wire.packages.digest of the node's list; "": none sent
    packages_root: str = ""  # where the node sees them (<root>/<arch>), for `packages -l`

    def words(self) -> list[str]:
        """The same offer as JAliEn-style words (a previous-version central, the shell)."""
        words = [f"site={self.site}"] if self.site else []
        if self.ce:
            words.append(f"ce={self.ce}")
        words += [f"ttl={self.ttl}", f"cores={self.cores}"]
        words += [f"{k}={getattr(self, k)}" for k in ("memory", "disk") if getattr(self, k)]
        for key in ("packages", "users"):
            value = getattr(self, key)
            if value is not None:
                words.append(f"{key}={','.join(value)}")
        if self.partitions:
            words.append(f"partitions={','.join(self.partitions)}")
        if self.node:
            words.append(f"node={self.node}")
        words += [f"{k}={v}" for k, v in self.extra.items()]
        return words


class CESettings(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Central's configuration of a CE (docs/ldap.md): whether it takes new jobs, and the
    slots and agent TTL its VoBox uses (0: the VoBox's own setting)."""

    name: str = ""
    status: str = "open"  # or "closed": no new jobs, no new agents
    max_running: int = 0
    max_queued: int = 0
    ttl: int = 0


class WaitingJobs(msgspec.Struct, tag="waiting", kw_only=True):
    """How many waiting jobs an offer could run, and central's settings of its CE (what
    the VoBox takes over its upstream connection; None: central has none for it)."""

    count: int
    ce: CESettings | None = None
    packages_wanted: bool = False  # central does not know the offer's digest: send the list


class MatchedJob(msgspec.Struct, tag="job", kw_only=True, omit_defaults=True):
    """The job central gives an agent, with the job token it runs under."""

    queue_id: int
    user: str
    jdl: str
    output_dir: str
    token_cert: str = ""  # PEM
    token_key: str = ""  # PEM (PKCS#8)

    def record(self) -> Record:
        """JAliEn's getMatchJob record, keys in the order alien.py and ROOT have seen."""
        out: Record = {
            "queueId": str(self.queue_id),
            "user": self.user,
            "jdl": self.jdl,
            "outputDir": self.output_dir,
        }
        if self.token_cert or self.token_key:
            out["tokencert"] = self.token_cert
            out["tokenkey"] = self.token_key
        out["message"] = f"job {self.queue_id}"
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> MatchedJob:
        try:
            queue_id = int(str(record.get("queueId", "")))
        except ValueError:
            raise SiteApiError(f"no job id in {str(record.get('queueId'))[:40]!r}") from None
        return cls(
            queue_id=queue_id,
            user=str(record.get("user", "")),
            jdl=str(record.get("jdl", "")),
            output_dir=str(record.get("outputDir", "")),
            token_cert=str(record.get("tokencert", "")),
            token_key=str(record.get("tokenkey", "")),
        )


NO_JOB_RECORD: Record = {"queueId": "", "message": "no matching job"}


class ResourceTrace(msgspec.Struct, tag="trace", kw_only=True, omit_defaults=True):
    """Peaks and totals over a payload's life (the agent's monitor), sent with its state."""

    samples: int = 0
    cpu: float = 0.0  # seconds
    wall: float = 0.0  # seconds
    max_rss: int = 0  # bytes
    max_pss: int = 0
    max_vms: int = 0
    max_disk: int = 0
    max_processes: int = 0

    def describe(self) -> str:
        return (
            f"cpu={self.cpu:.2f}s wall={self.wall:.1f}s maxrss={self.max_rss // 1024}kB "
            f"maxpss={self.max_pss // 1024}kB maxvms={self.max_vms // 1024}kB "
            f"maxdisk={self.max_disk // 1024}kB maxprocs={self.max_processes} "
            f"samples={self.samples}"
        )


MAX_TEXT = 1000  # characters of an error or message kept in the task queue


class StatusChange(msgspec.Struct, tag="status", kw_only=True, omit_defaults=True):
    """A job's new state as its agent reports it; ``exit_code`` None: not said."""

    queue_id: int
    state: str
    exit_code: int | None = None
    error: str = ""
    message: str = ""
    node: str = ""
    trace: ResourceTrace | None = None

    def trace_message(self) -> str:
        """The line kept in the job's trace: the message, then the resource trace."""
        parts = [self.message, self.trace.describe() if self.trace is not None else ""]
        return "; ".join(p for p in parts if p)[:MAX_TEXT]

    def words(self) -> list[str]:
        """``setJobStatus id STATE key=value...`` as a previous-version central reads it."""
        words = [str(self.queue_id), self.state]
        if self.exit_code is not None:
            words.append(f"exitcode={self.exit_code}")
        if self.error:
            words.append(f"error={self.error}")
        message = self.trace_message()
        if message:
            words.append(f"message={message}")
        if self.node:
            words.append(f"node={self.node}")
        return words


class AccessRequest(msgspec.Struct, tag="access", kw_only=True, omit_defaults=True):
    """``access [-s size] [-m md5] [-f] read|write lfn [specs...]``, typed."""

    access: str  # "read" or "write"
    lfn: str
    size: int = -1  # bytes a write books (a write must say it)
    md5: str = ""
    specs: list[str] = []  # SE names and QoS counts ("disk:2"), as JAliEn's access specs
    strict: bool = False  # -f: only the SEs named

    def words(self) -> list[str]:
        words = ["-s", str(self.size)] if self.size >= 0 else []
        if self.md5:
            words += ["-m", self.md5]
        if self.strict:
            words.append("-f")
        return [*words, self.access, self.lfn, *self.specs]


class AccessGrant(msgspec.Struct, tag="grant", kw_only=True, omit_defaults=True):
    """One replica a client may read or write: its URL and the signed envelope for it."""

    url: str
    envelope: str
    se: str
    guid: str
    lfn: str
    size: int = 0
    md5: str = ""
    tags: list[str] = []  # the SE's QoS tags
    n_ses: int = 1  # how many replicas this access granted

    def record(self) -> Record:
        """JAliEn's access record (alien.py and ROOT read it), keys as JAliEn orders them."""
        return {
            "url": self.url,
            "envelope": self.envelope,
            "se": self.se,
            "tags": "[" + ", ".join(sorted(t.lower() for t in self.tags)) + "]",
            "nSEs": str(self.n_ses),
            "guid": self.guid,
            "md5": self.md5,
            "size": str(self.size),
            "lfn": self.lfn,
            "message": f"{self.url}\nSE: {self.se} (doesn't need encrypted envelopes)\n"
            f"Signed envelope:\n{self.envelope}",
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> AccessGrant:
        def text(key: str) -> str:
            return str(record.get(key, ""))

        missing = [k for k in ("url", "envelope", "se") if not text(k)]
        if missing:
            raise SiteApiError(f"an access record without {', '.join(missing)}")
        try:
            size, n_ses = int(text("size") or 0), int(text("nSEs") or 1)
        except ValueError:
            raise SiteApiError(f"an access record with a bad size {text('size')[:40]!r}") from None
        tags = [t.strip() for t in text("tags").strip("[]").split(",") if t.strip()]
        return cls(
            url=text("url"),
            envelope=text("envelope"),
            se=text("se"),
            guid=text("guid"),
            lfn=text("lfn"),
            size=size,
            md5=text("md5"),
            tags=tags,
            n_ses=n_ses,
        )


class StagedFiles(msgspec.Struct, tag="staged", kw_only=True, omit_defaults=True):
    """A job's files on the shared filesystem of a node without network (docs/relay.md):
    asked with ``relay.staged`` on the job token's spool connection (``inputs``: the LFNs,
    paths empty), answered by the relay once they are there (``inputs``: LFN -> path, the
    ones it could not stage in ``errors``) with the directory outputs go to."""

    queue_id: int = 0
    inputs: dict[str, str] = {}
    errors: dict[str, str] = {}
    out_dir: str = ""


class StagedUpload(msgspec.Struct, tag="upload", kw_only=True, omit_defaults=True):
    """``relay.upload``: the relay uploads and registers *name* of the job's ``out_dir``
    as *lfn* (``specs`` as cp's ``@SE``/``disk:N``), with the job's token."""

    name: str
    lfn: str
    specs: str = ""


class PackagesWanted(msgspec.Struct, tag="packages?", kw_only=True):
    """Central's answer to an offer whose packages digest it does not know (a new list, or
    central restarted): ask again with the list in ``JobOffer.packages``."""

    digest: str


SiteMessage = (
    JobOffer
    | PackagesWanted
    | WaitingJobs
    | MatchedJob
    | StatusChange
    | AccessRequest
    | AccessGrant
    | StagedFiles
    | StagedUpload
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[SiteMessage] = msgspec.msgpack.Decoder(SiteMessage)


def encode(message: SiteMessage) -> bytes:
    return _encoder.encode(message)


T = TypeVar("T", bound=SiteMessage)


def decode_any(data: bytes) -> SiteMessage:
    """The site message in *data*, whichever it is; SiteApiError when it is none."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise SiteApiError(f"not a site message: {exc}") from None
    except RecursionError:
        raise SiteApiError("not a site message: nested too deeply") from None


def decode(data: bytes, kind: type[T]) -> T:
    """The site message in *data*, which must be a *kind*; SiteApiError otherwise."""
    message = decode_any(data)
    if not isinstance(message, kind):
        raise SiteApiError(f"expected {kind.__name__}, got {type(message).__name__}")
    return message


# -- the JAliEn edge: words in
_NUMBERS = ("ttl", "cores", "memory", "disk")
_SETS = ("packages", "users", "partitions")


def offer_from_words(words: Iterable[str]) -> JobOffer:
    """``key=value`` words (JAliEn's site calls, a previous-version agent or VoBox) -> an
    offer: site, ce, node, ttl, cores, memory, disk, packages/users/partitions as
    comma lists (``*``: any); other keys go to ``extra``."""
    offer = JobOffer()
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise SiteApiError(f"expected key=value, not {word[:80]!r}")
        key = key.lower()
        if key in _NUMBERS:
            try:
                setattr(offer, key, int(value))
            except ValueError:
                raise SiteApiError(f"{key} must be a number") from None
        elif key in ("site", "ce", "node"):
            setattr(offer, key, value)
        elif key in _SETS:
            items = sorted({v for v in value.split(",") if v})
            setattr(offer, key, items if key == "partitions" or value != "*" else None)
        else:
            offer.extra = {**offer.extra, key: value}
    return offer


def status_from_words(words: list[str]) -> StatusChange:
    """``id STATE [exitcode= error= message= node=]`` -> a status change (the trace, if
    any, is already in the message text as a previous-version agent wrote it)."""
    if len(words) < 2:
        raise SiteApiError("setJobStatus id STATE [key=value...]")
    try:
        queue_id = int(words[0])
    except ValueError:
        raise SiteApiError(f"not a job id: {words[0][:40]}") from None
    change = StatusChange(queue_id=queue_id, state=words[1])
    for word in words[2:]:
        key, _, value = word.partition("=")
        if key == "exitcode":
            change.exit_code = int(value) if value.lstrip("-").isdigit() else -1
        elif key == "error":
            change.error = value[:MAX_TEXT]
        elif key == "message":
            change.message = value[:MAX_TEXT]
        elif key == "node":
            change.node = value
    return change
