"""Information commands users type every day: echo, time/timing (a command N times), w (who
is connected), setSite (the session's close site), uuid and guidinfo (what a GUID says:
its time and MAC address, its file), df (SE space), cat and grep (a small file's content),
xrdstat (what the SEs hold of a file's replicas), lfnexpiretime (when files expire: stored
and shown, catalogue.expiry).

Output, usage text and exit codes follow JAliEn's commands (alien.shell.commands); where
JAliEn has no implementation (df: "not implemented yet") the answer is made from what the
catalogue knows (listSEs)."""

from __future__ import annotations

import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from jalien.auth.policy import Action as A
from jalien.catalogue.expiry import LfnExpiry
from jalien.catalogue.permissions import READ as READ_BIT
from jalien.catalogue.permissions import WRITE
from jalien.catalogue.service import Catalogue
from jalien.commands.dispatch import Dispatcher
from jalien.commands.errno import EINVAL, EIO, ENOENT, EPERM, EREMOTEIO, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.storage.envelope import READ as ACCESS_READ
from jalien.storage.envelope import Grant, pfn_path
from jalien.storage.replica_check import ReplicaChecker, ReplicaProblem
from jalien.wire.errors import RequestError
from jalien.wire.listing_views import human_size
from jalien.wire.messages import Record, Reply, Request

INFO, READ = A.INFO, A.READ
UUID_EPOCH = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 (UUID time) to 1970-01-01
MAX_TIMES = 10_000  # time N: at most this many runs
TIME_USAGE = "Usage: time <times>  <command> [command_arguments] "
GREP_USAGE = "usage: grep [-linux grep options] <pattern> [<filename>]+"
GREP_FLAGS = frozenset("ivnchHwxlo")
MAX_GREP_FILES = 100  # files one grep may read (central downloads each)
DAY_MS = 86_400_000
EXPIRE_UNITS = {"d": DAY_MS, "w": 7 * DAY_MS, "m": 30 * DAY_MS, "y": 365 * DAY_MS}
EXPIRE_USAGE = (
    "usage: lfnexpiretime [-options] [<file>]\n"
    "options:\n"
    "    -r                  : removes the expire time set for an LFN\n"
    "    -a                  : add a new expire time for the given LFN\n"
    "    -e                  : extends the current expire time for the given LFN\n"
    "    -d <number>         : specifies the number of days in the expire time\n"
    "    -w <number>         : specifies the number of weeks in the expire time\n"
    "    -m <number>         : specifies the number of months in the expire time\n"
    "    -y <number>         : specifies the number of years in the expire time"
)

ReadFile = Callable[[Session, str], Any]  # StorageCommands.read_small_file
RunCommand = Callable[[Session, Request], Any]  # Dispatcher.dispatch
Sessions = Callable[[], Iterable[Session]]  # the sessions the dispatcher holds


def guid_time_mac(text: str) -> tuple[int, str]:
    """What a time-based (version 1) GUID says: its creation time (ms since the epoch)
    and the MAC address of the machine that made it. EINVAL for anything else."""
    try:
        u = uuid.UUID(text)
    except ValueError:
        raise jalien_error(EINVAL, f"not a GUID: {text}") from None
    if u.version != 1:
        raise jalien_error(EINVAL, f"{text} is not a time-based GUID (version {u.version})")
    ms = (u.time - UUID_EPOCH) // 10_000
    mac = ":".join(f"{(u.node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))
    return ms, mac


def java_date(ms: int) -> str:
    """A time as Java's Date.toString() prints it (what JAliEn's uuid shows)."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(ms / 1000))


def uuid_line(name: str, ms: int, mac: str) -> str:
    return f"{name} : created on {java_date(ms)} ({ms}) on {mac}"


def grep_lines(
    text: str, pattern: str, flags: set[str], name: str = "", with_name: bool = False
) -> tuple[list[str], int]:
    """grep's matching lines of one file (with -n numbers, -c a count, -l the name) and
    how many lines matched; flags as Linux grep's -i -v -w -x -n -c -l -o."""
    try:
        expression = re.compile(
            rf"\b(?:{pattern})\b" if "w" in flags else pattern,
            re.IGNORECASE if "i" in flags else 0,
        )
    except re.error as exc:
        raise jalien_error(EINVAL, f"bad pattern {pattern!r}: {exc}") from None
    out: list[str] = []
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        found = expression.fullmatch(line) if "x" in flags else expression.search(line)
        if bool(found) == ("v" in flags):
            continue
        count += 1
        shown = found.group(0) if "o" in flags and found else line
        if "n" in flags:
            shown = f"{number}:{shown}"
        out.append(f"{name}: {shown}" if with_name else shown)
    if "c" in flags:
        out = [f"{name}: {count}" if with_name else str(count)]
    elif "l" in flags:
        out = [name] if count else []
    return out, count


def grep_words(words: list[str]) -> tuple[set[str], str, list[str]]:
    """grep's words as JAliEn reads them: options until the first other word (``-e`` takes
    the pattern), then the pattern and the files. EINVAL with the usage when one lacks."""
    flags: set[str] = set()
    pattern: str | None = None
    rest: list[str] = []
    words_left = iter(words)
    for word in words_left:
        if pattern is None and not rest and word == "-e":
            pattern = next(words_left, None)
            continue
        if pattern is None and word.startswith("-") and len(word) > 1:
            letters = set(word[1:])
            if not letters <= GREP_FLAGS:
                raise jalien_error(EINVAL, f"{word} is not a recognized option\n{GREP_USAGE}")
            flags |= letters
        elif pattern is None:
            pattern = word
        else:
            rest.append(word)
    if pattern is None:
        raise jalien_error(
            EINVAL,
            "grep requires a pattern to search for, and at least one file to look at\n"
            + GREP_USAGE,
        )
    if not rest:
        raise jalien_error(EINVAL, f"grep requires some files to process\n{GREP_USAGE}")
    return flags, pattern, rest


class InfoCommands:
    """*read_file*: a small catalogue file's bytes (storage); *checker*: asks SEs what they
    hold; *dispatcher*: called when a command runs another one (time) or lists sessions
    (w) - set once the dispatcher exists (it is built on this table)."""

    def __init__(
        self,
        table: CommandTable,
        catalogue: Catalogue,
        *,
        read_file: ReadFile | None = None,
        checker: ReplicaChecker | None = None,
        expiry: LfnExpiry | None = None,
    ) -> None:
        self.table = table
        self.cat = catalogue
        self.read_file = read_file
        self.checker = checker
        self.expiry = expiry
        self.run_command: RunCommand | None = None
        self.sessions: Sessions = tuple

    def bind(self, run_command: RunCommand, sessions: Sessions) -> None:
        self.run_command = run_command
        self.sessions = sessions

    def register(self) -> None:
        add = self.table.add
        add(
            "echo",
            self.echo,
            "print the arguments: echo [text...]",
            action=INFO,
            args=Args(words=True),
        )
        add(
            "time",
            self.time,
            "run a command N times: time <times> <command> [args]",
            action=INFO,
            args=Args(words=True, min=2, usage=TIME_USAGE),
        )
        add(
            "timing",
            self.time,
            "as time: timing <times> <command> [args]",
            action=INFO,
            args=Args(words=True, min=2, usage=TIME_USAGE),
        )
        add(
            "lfnexpiretime",
            self.lfn_expire_time,
            "when files expire: lfnexpiretime [-a|-e|-r] [-d n] [-w n] [-m n] [-y n] <lfn>...",
            action=A.WRITE,
            args=Args(flags="aer", valued=("d", "w", "m", "y"), min=1, usage=EXPIRE_USAGE),
        )
        add(
            "shutdown",
            self.shutdown,
            "stop the jBox (its owner only; answered by the jBox itself)",
            action=INFO,
            args=Args(max=0, usage="usage: shutdown"),
        )
        add(
            "w",
            self.w,
            "who is connected: the accounts with sessions here",
            action=READ,
            args=Args(max=0, usage="usage: w"),
        )
        add(
            "setSite",
            self.set_site,
            "the session's close site: setSite [site name]",
            action=INFO,
            args=Args(words=True, max=1, usage="usage: setSite [site name]"),
        )
        add(
            "uuid",
            self.uuid,
            "a GUID's time and MAC: uuid <lfn|guid>...",
            action=READ,
            args=Args(words=True, min=1, usage="usage: uuid <filename1> [<filename2>] ..."),
        )
        add(
            "guidinfo",
            self.guidinfo,
            "what the catalogue knows of a GUID: guidinfo <guid>...",
            action=READ,
            args=Args(words=True, min=1, usage="usage: guidinfo <uuid> ..."),
        )
        add("df", self.df, "SE space: df [-h] [SE name...]", action=READ, args=Args(flags="h"))
        add(
            "cat",
            self.cat_files,
            "a small file's content: cat [-n] [-b] [-E] <lfn>...",
            action=READ,
            args=Args(flags="nbE", min=1, usage="usage: cat [-options] [<filename>]"),
        )
        add(
            "grep",
            self.grep,
            "search small files: grep [-ivnchHwxlo] <pattern> <lfn>...",
            action=READ,
        )
        add(
            "xrdstat",
            self.xrdstat,
            "what the SEs hold of a file's replicas: xrdstat <lfn>...",
            action=READ,
            args=Args(
                flags="v",
                valued=("s",),
                min=1,
                usage="usage: xrdstat [-s SE] <filename1> [<filename2>] ...",
            ),
        )

    # -- session
    def shutdown(self, session: Session, opts: Options) -> list[Record]:
        """Listed so that alien.py sends it (it only sends the commands the server lists);
        a jBox answers it itself and stops, central refuses it."""
        raise jalien_error(EPERM, "shutdown stops a jBox; this is the central service")

    def echo(self, session: Session, opts: Options) -> list[Record]:
        return [{"message": " ".join(opts.args)}]

    async def time(self, session: Session, opts: Options) -> list[Record]:
        words = opts.args
        try:
            times = int(words[0])
        except ValueError:
            raise jalien_error(EINVAL, TIME_USAGE) from None
        if not 0 < times <= MAX_TIMES:
            raise jalien_error(EINVAL, f"<times> is 1 to {MAX_TIMES}\n{TIME_USAGE}")
        command, args = words[1], words[2:]
        if command in ("time", "timing"):
            raise jalien_error(EINVAL, f"time cannot time itself\n{TIME_USAGE}")
        if self.run_command is None or command not in self.table:
            raise jalien_error(ENOENT, f"Command [{command}] not found!")
        timings: list[float] = []
        last = Reply()
        for _ in range(times):
            started = time.perf_counter()
            last = await _answer(
                self.run_command(session, Request(command=command, options=list(args)))
            )
            timings.append((time.perf_counter() - started) * 1000)
        total = sum(timings)
        shown = " ".join([command, *args])
        text = f'"{shown}" with #{times} tries,\tavr/total msec:\t\t{total / times:.3f}/{total:.3f}'
        record: Record = {
            "message": text,
            "command": shown,
            "times": str(times),
            "average_ms": f"{total / times:.3f}",
            "total_ms": f"{total:.3f}",
            "min_ms": f"{min(timings):.3f}",
            "max_ms": f"{max(timings):.3f}",
            "exitcode": str(last.exitcode),
        }
        return [record]

    def w(self, session: Session, opts: Options) -> list[Record]:
        now = time.time()
        accounts: dict[str, list[Session]] = {}
        for s in self.sessions():
            accounts.setdefault(s.identity.login, []).append(s)
        lines = [f"     {'Account name':<20} | {'Sessions':>12} | {'Connected':>12}"]
        lines.append("--------------------------+--------------+--------------")
        records: list[Record] = []
        for i, (login, held) in enumerate(sorted(accounts.items()), 1):
            since = min(s.opened for s in held)
            lines.append(f"{i:3d}. {login:<20} | {len(held):>12} | {_ago(now - since):>12}")
            records.append({"account": login, "sessions": str(len(held)), "since": f"{since:.0f}"})
        lines.append("--------------------------+--------------+--------------")
        total = sum(len(v) for v in accounts.values())
        lines.append(f"     {'TOTAL':<20} | {total:>12} | {'':>12}")
        text = "\n".join(lines)
        return [{"message": text, "value": text}, *records]

    def set_site(self, session: Session, opts: Options) -> list[Record]:
        if not opts.args or not opts.args[0].strip():
            return [{"message": f"Keeping the current close site: {session.site}"}]
        target = opts.args[0].strip()
        if target.lower() == "auto" or ":" in target or "." in target:
            # JAliEn asks MonALISA for the closest site; no such service here
            raise RequestError(
                f"Could not map {target} to a site name at the moment, keeping previous "
                f"value of {session.site}",
                1,
            )
        previous, session.site = session.site, target
        return [{"message": f"Setting close site to {target} (was {previous})", "site": target}]

    # -- GUIDs

    async def uuid(self, session: Session, opts: Options) -> list[Record]:
        records: list[Record] = []
        error: RequestError | None = None
        for name in opts.args:
            try:
                entry = await self.cat.get(session.absolute(name))
            except RequestError:
                entry = None
            if entry is None:
                try:
                    guid = str(uuid.UUID(name))
                except ValueError:
                    error = RequestError(f"File does not exist: {name}", 1)
                    continue
            elif entry.type != "f" or not entry.guid:
                error = RequestError(f"This entry is not a file: {name}", 2)
                continue
            else:
                guid = entry.guid
            try:
                ms, mac = guid_time_mac(guid)
            except RequestError as exc:
                error = exc
                continue
            records.append(
                {"message": uuid_line(name, ms, mac), "guid": guid, "ctime": str(ms), "mac": mac}
            )
        if error is not None and not records:
            raise error
        return records

    async def guidinfo(self, session: Session, opts: Options) -> list[Record]:
        records: list[Record] = []
        missing: list[str] = []
        for text in opts.args:
            ms, mac = guid_time_mac(text)
            guid = str(uuid.UUID(text))
            entries = await self.cat.by_guid(session.identity, guid)
            if not entries:
                missing.append(text)
                continue
            first = entries[0]
            _, replicas = await self.cat.whereis(session.identity, first.path)
            lines = [
                f"GUID: {guid}",
                f"Created on: {java_date(ms)} ({ms}) by {mac}",
                f"Owner: {first.owner}:{first.gowner}",
                f"Permissions: {first.perm}",
                f"Size: {first.size} ({human_size(first.size)})",
                f"MD5: {first.md5}",
                *(f"LFN: {e.path}" for e in entries),
                *(f"Replica: {r.se}\t{r.pfn}" for r in replicas),
            ]
            records.append(
                {
                    "message": "\n".join(lines),
                    "guid": guid,
                    "ctime": str(ms),
                    "mac": mac,
                    "owner": first.owner,
                    "gowner": first.gowner,
                    "size": str(first.size),
                    "md5": first.md5,
                    "lfns": ",".join(e.path for e in entries),
                    "ses": ",".join(r.se for r in replicas),
                }
            )
        if missing and not records:
            raise jalien_error(ENOENT, f"Cannot find this GUID in the catalogue: {missing[0]}")
        return records

    # -- expiry
    async def lfn_expire_time(self, session: Session, opts: Options) -> list[Record]:
        if self.expiry is None:
            raise jalien_error(EIO, "no expiry store here")
        amount = sum(opts.number(unit) * ms for unit, ms in EXPIRE_UNITS.items())
        changing = bool(opts.flags & {"a", "e", "r"}) or amount != 0
        if changing and "r" not in opts and amount <= 0:
            raise jalien_error(EINVAL, f"no time given (-d, -w, -m or -y)\n{EXPIRE_USAGE}")
        lfns: list[str] = []
        for name in opts.args:
            path = session.absolute(name)
            bit = WRITE if changing else READ_BIT
            entry = await self.cat.entry_for(session.identity, path, bit, "change")
            if entry is None:
                raise jalien_error(ENOENT, name)
            lfns.append(entry.path)
        current = await self.expiry.get(lfns)
        if changing:
            now = int(time.time() * 1000)
            wanted: dict[str, int | None] = {}
            for lfn in lfns:
                if "r" in opts:
                    wanted[lfn] = None
                elif "e" in opts:
                    wanted[lfn] = max(current.get(lfn, now), now) + amount
                else:
                    wanted[lfn] = now + amount
            await self.expiry.set(wanted)
            current = {k: v for k, v in wanted.items() if v is not None}
        records: list[Record] = []
        for lfn in lfns:
            when = current.get(lfn)
            if when is None:
                records.append({"lfn": lfn, "expires": "", "message": f"{lfn}: no expire time"})
            else:
                text = f"{lfn}: expires on {java_date(when)} ({when})"
                records.append({"lfn": lfn, "expires": str(when), "message": text})
        return records

    # -- storage
    async def df(self, session: Session, opts: Options) -> list[Record]:
        wanted = {n.upper() for n in opts.args}
        human = "h" in opts
        records: list[Record] = []
        size = human_size if human else str
        lines = [f"{'Storage element':<32} {'Size':>14} {'Used':>14} {'Available':>14} {'Use%':>5}"]
        for se in sorted(await self.cat.list_ses(), key=lambda se: se.name.upper()):
            if "::" not in se.name or (wanted and se.name.upper() not in wanted):
                continue
            free = max(se.capacity - se.used, 0)
            percent = f"{100 * se.used // se.capacity}%" if se.capacity else "-"
            lines.append(
                f"{se.name:<32} {size(se.capacity):>14} {size(se.used):>14} {size(free):>14} "
                f"{percent:>5}"
            )
            records.append(
                {
                    "seName": se.name,
                    "totalSpace": str(se.capacity),
                    "usedSpace": str(se.used),
                    "freeSpace": str(free),
                    "usage": percent,
                }
            )
        if wanted and not records:
            raise jalien_error(ENOENT, f"No such SE: {', '.join(sorted(wanted))}")
        return [{"message": "\n".join(lines)}, *records]

    async def _content(self, session: Session, name: str) -> str:
        if self.read_file is None:
            raise jalien_error(EIO, "reading files needs storage")
        data = await self.read_file(session, name)
        return bytes(data).decode(errors="replace")

    async def cat_files(self, session: Session, opts: Options) -> list[Record]:
        records: list[Record] = []
        number = 0
        for name in opts.args:
            text = await self._content(session, name)
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            shown: list[str] = []
            for line in lines:
                end = "$" if "E" in opts else ""
                if "n" in opts or ("b" in opts and line):
                    number += 1
                    shown.append(f"{number:6d}\t{line}{end}")
                else:
                    shown.append(f"{line}{end}")
            records.append({"message": "\n".join(shown), "lfn": name})
        return records

    async def grep(self, session: Session, words: list[str]) -> list[Record]:
        flags, pattern, rest = grep_words(words)
        paths: list[str] = []
        for name in rest:
            expanded = await self.cat.expand(session.identity, session.absolute(name))
            if not expanded:
                raise jalien_error(ENOENT, f"No such file or directory: {name}")
            paths += expanded
        if len(paths) > MAX_GREP_FILES:  # central reads each one: a pattern stays small
            raise jalien_error(
                EINVAL, f"grep reads at most {MAX_GREP_FILES} files, not {len(paths)}"
            )
        with_name = ("H" in flags or len(paths) > 1) and "h" not in flags
        out: list[str] = []
        matched = 0
        for path in paths:
            text = await self._content(session, path)
            lines, count = grep_lines(text, pattern, flags, path, with_name)
            out += lines
            matched += count
        if not matched and "c" not in flags:
            raise RequestError("", 1)  # as grep: nothing matched is exit 1, quietly
        return [{"message": "\n".join(out), "matches": str(matched)}]

    async def xrdstat(self, session: Session, opts: Options) -> Reply:
        if self.checker is None:
            raise jalien_error(EIO, "no replica checker")
        only = {s.upper() for v in opts.values.get("s", []) for s in v.split(",") if s}
        records: list[Record] = []
        bad = 0
        for name in opts.args:
            entry, replicas = await self.cat.whereis(session.identity, session.absolute(name))
            lines = [f"Checking the replicas of {entry.path}"]
            found: list[Record] = []
            for replica in replicas:
                if only and replica.se.upper() not in only:
                    continue
                status, detail = await self._stat(session, entry, replica)
                bad += status != "OK"
                line = f"\t{replica.se:<30}\t{replica.pfn}\t{status}"
                lines.append(f"{line} ({detail})" if "v" in opts or status != "OK" else line)
                found.append(
                    {
                        "lfn": entry.path,
                        "se": replica.se,
                        "pfn": replica.pfn,
                        "status": status,
                        "detail": detail,
                    }
                )
            if not found:
                lines.append("\tno replicas" + (f" on {', '.join(sorted(only))}" if only else ""))
                bad += 1
            records += [{"message": "\n".join(lines)}, *found]
        if bad:  # the answer, and an exit code saying some replica is not what it should be
            text = "\n".join(r["message"] for r in records if "message" in r)
            return Reply(results=records, exitcode=EREMOTEIO, error=text)
        return Reply(results=records)

    async def _stat(self, session: Session, entry: Any, replica: Any) -> tuple[str, str]:
        assert self.checker is not None
        grant = Grant(
            access=ACCESS_READ,
            pfn=pfn_path(replica.pfn),
            turl=replica.pfn,
            lfn=entry.path,
            guid=entry.guid,
            size=entry.size,
            md5=entry.md5,
            se=replica.se,
            user=session.identity.login,
        )
        try:
            stored = await self.checker.stored(grant)
        except ReplicaProblem as exc:
            return "NOT OK", str(exc)
        if stored.size != entry.size:
            return "NOT OK", f"{stored.size} bytes, the catalogue says {entry.size}"
        if stored.md5 and entry.md5 and stored.md5.lower() != entry.md5.lower():
            return "NOT OK", f"md5 {stored.md5}, the catalogue says {entry.md5}"
        return "OK", f"{stored.size} bytes"


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


async def _answer(result: Any) -> Reply:
    """A dispatcher's answer, whichever form it takes (a Reply, an awaitable, a stream):
    the last Reply, after every page is read."""
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Reply):
        return result
    last = Reply()
    stream: AsyncIterator[Reply] = result
    async for page in stream:
        last = page
    return last


def bind_dispatcher(table: CommandTable, dispatcher: Dispatcher) -> None:
    """Give the info commands of *table* the dispatcher built on it: time runs commands
    through it (the policy applies to each), w lists its sessions."""
    command = table.get("w")
    owner = getattr(command.fn, "__self__", None) if command is not None else None
    if isinstance(owner, InfoCommands):
        owner.bind(dispatcher.dispatch, lambda: tuple(dispatcher.sessions))
