"""The cache service's commands: ``cache.get``, ``cache.set``, ``cache.delete`` and
``cache.invalidate`` (raw commands: the hot path of other services) and ``cachestats``.

On the binary channel keys and values travel as bytes in ``Request.data`` and
``Reply.data``::

    cache.get         options [ns]                                data [key, ...]
                      -> Reply.data [value or None, ...]
    cache.set         options [ns, -ttl S, -scope LFN, -nx, -sync] data [key, value, ...]
    cache.delete      options [ns]                                data [key, ...]
    cache.invalidate  options [lfn, ...]

Several keys in one request are the multi-get (multi-set, multi-delete); requests
pipelined on a connection are answered inline, in one write per read. ``cache.set``
answers once the write is queued (this server reads it at once, other processes of the
host after the group commit, within milliseconds); ``-sync`` answers after the commit.

From a shell or a JSON client (no binary data) keys and values are the words after the
namespace, as UTF-8 text, and ``cache.get`` answers records {key, value, message}.
Only identities with the ``cache`` role and admins may use them (the policy): the cache holds other
users' answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jalien.auth.policy import Action
from jalien.cache.store import CacheError, CacheStore
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.wire.errors import EXIT_NOT_FOUND
from jalien.wire.messages import Record, Reply, Request

# the policy lets in the ``cache`` role and admins (jalien.auth.policy)
RAW: dict[str, Any] = {"raw": True, "action": Action.CACHE}


def _text_keys(words: list[str]) -> list[bytes]:
    return [word.encode("utf-8", "surrogateescape") for word in words]


def _set_options(options: list[str]) -> tuple[float | None, str, bool, bool, list[str]]:
    ttl: float | None = None
    scope, if_absent, sync = "", False, False
    words: list[str] = []
    it = iter(options[1:])
    for word in it:
        if word == "-ttl":
            raw = next(it, None)
            try:
                ttl = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise CacheError(f"cache.set: -ttl needs seconds, got {raw!r}") from None
        elif word == "-scope":
            scope = next(it, "")
            if not scope:
                raise CacheError("cache.set: -scope needs an absolute path")
        elif word == "-nx":
            if_absent = True
        elif word == "-sync":
            sync = True
        else:
            words.append(word)
    return ttl, scope, if_absent, sync, words


class CacheCommands:
    """Registers the cache commands of one store in a command table."""

    def __init__(self, table: CommandTable, store: CacheStore) -> None:
        self.table = table
        self.store = store

    def register(self) -> None:
        add = self.table.add
        add("cache.get", self.get, "cache.get <ns> <key>...: cached values (multi-get)", **RAW)
        add(
            "cache.set",
            self.set,
            "cache.set <ns> [-ttl s] [-scope lfn] [-nx] [-sync] <key> <value>...",
            **RAW,
        )
        add("cache.delete", self.delete, "cache.delete <ns> <key>...: drop keys", **RAW)
        add(
            "cache.invalidate",
            self.invalidate,
            "cache.invalidate <lfn>...: drop the values that depend on these paths",
            **RAW,
        )
        add(
            "cachestats",
            self.stats,
            "cache namespaces: entries, bytes, hits, misses, evictions [-check]",
            action=Action.ADMIN,
        )

    # -- raw commands: fn(session, request) -> Reply
    def get(self, session: Session, request: Request) -> Reply:
        options = request.options
        if not options:
            raise CacheError("usage: cache.get <ns> <key>...")
        keys = request.data
        if keys:
            if len(keys) == 1:  # the common case, without the list of get_many
                return Reply(data=[self.store.get(options[0], keys[0])])
            return Reply(data=self.store.get_many(options[0], keys))
        words = options[1:]
        if not words:
            raise CacheError("usage: cache.get <ns> <key>...")
        records: list[Record] = []
        missing = []
        for word, value in zip(
            words, self.store.get_many(options[0], _text_keys(words)), strict=True
        ):
            if value is None:
                missing.append(word)
                continue
            text = value.decode("utf-8", "replace")
            records.append({"key": word, "value": text, "message": text})
        if missing:
            return Reply(
                results=records,
                exitcode=EXIT_NOT_FOUND,
                error=f"not in cache {options[0]}: {' '.join(missing)}",
            )
        return Reply(results=records)

    def set(self, session: Session, request: Request) -> Reply | Any:
        options = request.options
        if not options:
            raise CacheError("usage: cache.set <ns> [-ttl s] [-scope lfn] <key> <value>...")
        ns = options[0]
        words: list[str]
        if len(options) == 1:  # the hot path: no flags
            ttl, scope, if_absent, sync, words = None, "", False, False, []
        else:
            ttl, scope, if_absent, sync, words = _set_options(options)
        items: list[bytes] = request.data or _text_keys(words)
        if not items or len(items) % 2:
            raise CacheError("cache.set needs key value pairs")
        put = self.store.set
        for i in range(0, len(items), 2):
            put(ns, items[i], items[i + 1], ttl, scope, if_absent=if_absent)
        if sync:
            return self._committed()
        return Reply()  # a new one: the JSON edge fills in its metadata

    def delete(self, session: Session, request: Request) -> Reply:
        options = request.options
        if not options:
            raise CacheError("usage: cache.delete <ns> <key>...")
        for key in request.data or _text_keys(options[1:]):
            self.store.delete(options[0], key)
        return Reply()  # a new one: the JSON edge fills in its metadata

    def invalidate(self, session: Session, request: Request) -> Reply:
        if not request.options:
            raise CacheError("usage: cache.invalidate <lfn>...")
        for path in request.options:
            self.store.invalidate(path)
        return Reply()  # a new one: the JSON edge fills in its metadata

    async def _committed(self) -> Reply:
        await asyncio.wrap_future(self.store.flush())
        return Reply()

    # -- an ordinary (admin) command
    async def stats(self, session: Session, args: list[str]) -> list[Record]:
        store = self.store
        records: list[Record] = []
        lines = [
            f"{'namespace':<24} {'entries':>9} {'bytes':>11} {'hits':>10} {'misses':>10} "
            f"{'hit%':>5} {'evicted':>8} {'expired':>8} {'invalid.':>8}"
        ]
        for ns in store.stats():
            lookups = ns.hits + ns.misses
            ratio = f"{100.0 * ns.hits / lookups:.1f}" if lookups else "-"
            records.append(
                {
                    "namespace": ns.name,
                    "entries": str(ns.entries),
                    "bytes": str(ns.bytes),
                    "hits": str(ns.hits),
                    "misses": str(ns.misses),
                    "expired": str(ns.expired),
                    "sets": str(ns.sets),
                    "deletes": str(ns.deletes),
                    "evictions": str(ns.evictions),
                    "invalidated": str(ns.invalidated),
                    "swept": str(ns.swept),
                    "max_entries": str(ns.policy.max_entries),
                    "ttl": f"{ns.policy.ttl:g}",
                    "policy": "lru" if ns.policy.lru else "fifo",
                }
            )
            lines.append(
                f"{ns.name:<24} {ns.entries:>9} {ns.bytes:>11} {ns.hits:>10} {ns.misses:>10} "
                f"{ratio:>5} {ns.evictions:>8} {ns.expired + ns.swept:>8} {ns.invalidated:>8}"
            )
        lines.append(
            f"commits {store.commits}, writes dropped {store.dropped}, "
            f"lookups in unknown namespaces {store.unknown_misses}"
        )
        if "-check" in args:
            problems = await asyncio.to_thread(store.check)
            lines.append("consistency: " + ("; ".join(problems) if problems else "ok"))
        # one line of the table per record (a shell prints the messages), header and totals
        # on the first and the last
        if not records:
            return [{"message": "\n".join(lines)}]
        body = lines[1 : 1 + len(records)]
        for record, line in zip(records, body, strict=True):
            record["message"] = line
        records[0]["message"] = lines[0] + "\n" + records[0]["message"]
        records[-1]["message"] += "\n" + "\n".join(lines[1 + len(records) :])
        return records
