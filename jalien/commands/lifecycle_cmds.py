"""Placement rules, SE decommissioning and dark-data checks (docs/datamovers.md):

- ``listRules`` (anyone): each rule and the state its last check found;
- ``addRule NAME PATTERN REPLICAS [-qos TAG] [-se SE,...]``, ``removeRule NAME`` (admins);
- ``seDecommission [-lost] SE`` starts (or shows) draining an SE, or recovering a lost one;
  ``seDecommission -status [SE]`` the progress view (stuck and lost files listed),
  ``seDecommission -retry SE`` decides the stuck files again (admins);
- ``seCheck SE`` crawls an SE now for dark and lost files; ``seCheck -report [SE]`` lists
  what the crawls found, ``seCheck -purge`` queues the removal of the dark files past their
  grace period now (admins).
"""

from __future__ import annotations

import time

from jalien.auth.policy import Action as A
from jalien.commands.errno import EINVAL, ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.datamovers.darkdata import CrawlBusy, UnknownSE
from jalien.datamovers.decommission import DecommissionError, Progress
from jalien.datamovers.lifecycle import Lifecycle
from jalien.datamovers.rules import Rule, RuleError
from jalien.storage.se_listing import ListingError
from jalien.wire.messages import Record

ADD_USAGE = "addRule <name> <LFN pattern> <replicas> [-qos <tag>] [-se <SE>[,<SE>...]]"
DECOMMISSION_USAGE = "seDecommission [-lost] <SE> | -status [<SE>] | -retry <SE>"
CHECK_USAGE = "seCheck <SE> | -report [<SE>] [-list <N>] | -purge"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "never"


class LifecycleCommands:
    def __init__(self, table: CommandTable, lifecycle: Lifecycle) -> None:
        self.table = table
        self.lc = lifecycle

    def register(self) -> None:
        add = self.table.add
        add(
            "listRules",
            self.list_rules,
            "placement rules and what their last check found",
            action=A.READ,
            args=Args(max=0, usage="listRules"),
        )
        add(
            "addRule",
            self.add_rule,
            "add a placement rule (admin)",
            action=A.ADMIN,
            args=Args(valued=("qos", "se"), min=3, max=3, usage=ADD_USAGE),
        )
        add(
            "removeRule",
            self.remove_rule,
            "remove a placement rule (admin)",
            action=A.ADMIN,
            args=Args(min=1, max=1, usage="removeRule <name>"),
        )
        add(
            "seDecommission",
            self.decommission,
            "drain an SE (or recover a lost one) and follow it (admin)",
            action=A.ADMIN,
            args=Args(
                flags=("lost", "status", "retry"), valued=("list",), max=1, usage=DECOMMISSION_USAGE
            ),
        )
        add(
            "seCheck",
            self.se_check,
            "find dark and lost files on an SE (admin)",
            action=A.ADMIN,
            args=Args(flags=("report", "purge"), valued=("list",), max=1, usage=CHECK_USAGE),
        )

    # -- rules
    async def list_rules(self, session: Session, opts: Options) -> list[Record]:
        records: list[Record] = []
        lines = []
        for rec in self.lc.rules.listing():
            r, s = rec.rule, rec.state
            where = f"qos {r.qos or '*'}" + (f" on {','.join(r.ses)}" if r.ses else "")
            lines.append(
                f"{r.name}: {r.pattern} -> {r.copies} replica(s), {where}; last check "
                f"{_when(s.checked)}: {s.files} files, {s.satisfied} satisfied, {s.queued} "
                f"queued, {s.unsatisfiable} unsatisfiable"
                + (f"; error: {s.error}" if s.error else "")
            )
            records.append(
                {
                    "name": r.name,
                    "pattern": r.pattern,
                    "replicas": str(r.copies),
                    "qos": r.qos,
                    "ses": ",".join(r.ses),
                    "checked": str(int(s.checked)),
                    "files": str(s.files),
                    "satisfied": str(s.satisfied),
                    "queued": str(s.queued),
                    "unsatisfiable": str(s.unsatisfiable),
                    "transfers": str(s.transfers),
                    "error": s.error,
                }
            )
        if not lines:
            lines.append("no placement rules")
        return [{"message": "\n".join(lines)}, *records]

    async def add_rule(self, session: Session, opts: Options) -> list[Record]:
        name, pattern, copies = opts.args
        if not copies.isdigit():
            raise jalien_error(EINVAL, f"the number of replicas is not a number: {copies}")
        ses = [s.strip() for s in opts.value("se").split(",") if s.strip()]
        rule = Rule(name=name, pattern=pattern, copies=int(copies), qos=opts.value("qos"), ses=ses)
        try:
            added = await self.lc.rules.add(rule)
        except RuleError as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        return [{"message": f"rule {added.name} added: {added.pattern} -> {added.copies}"}]

    async def remove_rule(self, session: Session, opts: Options) -> list[Record]:
        try:
            gone = await self.lc.rules.remove(opts.args[0])
        except RuleError as exc:
            raise jalien_error(ENOENT, str(exc)) from None
        return [{"message": f"rule {gone.name} removed"}]

    # -- decommissioning
    async def decommission(self, session: Session, opts: Options) -> list[Record]:
        dec = self.lc.decommissions
        try:
            if "status" in opts:
                if not opts.args:
                    rows = [
                        f"{d.se}: {d.mode} {d.state} (since {_when(d.started)}, "
                        f"{d.walked} files decided)"
                        for d in dec.all()
                    ]
                    return [{"message": "\n".join(rows) or "no SE is being decommissioned"}]
                return _progress(await dec.progress(opts.args[0], opts.number("list", 100)))
            if not opts.args:
                raise jalien_error(EINVAL, DECOMMISSION_USAGE)
            if "retry" in opts:
                d = await dec.retry(opts.args[0])
                return [{"message": f"{d.se}: stuck files queued to be decided again"}]
            d = await dec.start(opts.args[0], lost="lost" in opts)
        except DecommissionError as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        what = "recovery of the lost SE" if d.mode == "lost" else "decommissioning"
        return [
            {
                "message": f"{d.se}: {what} {d.state} (read-only since {_when(d.started)}); "
                f"follow it with seDecommission -status {d.se}",
                "se": d.se,
                "state": d.state,
                "mode": d.mode,
            }
        ]

    # -- dark data
    async def se_check(self, session: Session, opts: Options) -> list[Record]:
        crawler, store = self.lc.crawler, self.lc.store
        if "report" in opts:
            se = opts.args[0] if opts.args else ""
            limit = opts.number("list", 100)
            dark = await store.dark_files(se, limit=limit)
            lost = await store.lost_replicas(se, limit=limit)
            crawls = await store.crawls(se, limit=5)
            lines = ["last crawls:"] + [
                f"  {c.se} {_when(c.started)} ({c.seconds:.1f} s): {c.listed} listed, "
                f"{c.first}/{c.second} in the dumps, {c.dark} dark, {c.lost} lost"
                + (f"; failed: {c.error}" if c.error else "")
                for c in crawls
            ]
            lines += [f"dark files ({len(dark)}):"] + [
                f"  {d.se} {d.path} {d.state} (found {_when(d.found)})" for d in dark
            ]
            lines += [f"lost replicas ({len(lost)}):"] + [
                f"  {x.se} {x.path} guid {x.guid}" for x in lost
            ]
            records: list[Record] = [
                {"kind": "dark", "se": d.se, "path": d.path, "state": d.state} for d in dark
            ]
            records += [{"kind": "lost", "se": x.se, "path": x.path, "guid": x.guid} for x in lost]
            return [{"message": "\n".join(lines)}, *records]
        if "purge" in opts:
            queued = await crawler.purge()
            return [{"message": f"{queued} dark files past their grace period queued for removal"}]
        if not opts.args:
            raise jalien_error(EINVAL, CHECK_USAGE)
        try:
            report = await crawler.crawl(opts.args[0])
        except UnknownSE as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        except CrawlBusy as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        except ListingError as exc:
            raise jalien_error(EINVAL, f"cannot list {opts.args[0]}: {exc}") from None
        return [
            {
                "message": f"{report.se}: {report.listed} files listed, {report.first}/"
                f"{report.second} replicas in the catalogue dumps; {report.dark} dark "
                f"(quarantined), {report.lost} lost ({report.seconds:.1f} s)",
                "se": report.se,
                "listed": str(report.listed),
                "dark": str(report.dark),
                "lost": str(report.lost),
            }
        ]


def _progress(p: Progress) -> list[Record]:
    d = p.decommission
    counts = ", ".join(f"{n} {s}" for s, n in sorted(p.files.items())) or "none yet"
    lines = [
        f"{d.se}: {d.mode} {d.state} since {_when(d.started)} (updated {_when(d.updated)})",
        f"files: {counts}",
    ]
    if p.stuck:
        lines.append(f"stuck ({len(p.stuck)}):")
        lines += [f"  {f.lfn or f.guid}: {f.reason}" for f in p.stuck]
    if p.lost:
        lines.append(f"lost ({len(p.lost)}):")
        lines += [f"  {f.lfn}: {f.reason}" for f in p.lost]
    records: list[Record] = [
        {"se": d.se, "state": d.state, "mode": d.mode}
        | {f"files_{s.lower()}": str(n) for s, n in p.files.items()}
    ]
    records += [{"lfn": f.lfn, "guid": f.guid, "state": f.state, "reason": f.reason}
                for f in p.stuck + p.lost]  # fmt: skip
    return [{"message": "\n".join(lines)}, *records]
