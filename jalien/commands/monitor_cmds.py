"""Watching the grid (docs/monitoring.md): ``spy`` on a running job from outside, ``gridstatus``
(the sites and agents as they report), ``logs`` (a VoBox's or a JobAgent's recent log lines,
for admins), and the site calls that feed them - ``spyReport`` and ``logsReport`` (the
answers) and ``monitor.report`` (a VoBox's or a JobAgent's report)."""

from __future__ import annotations

import time

from jalien.auth import policy
from jalien.auth.policy import Action as A
from jalien.auth.policy import IdentityKind
from jalien.commands.errno import EINVAL, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.jobs.logs_desk import LogsDesk
from jalien.jobs.spy import SpyDesk
from jalien.monitor.grid import GridView
from jalien.wire import monitor_api
from jalien.wire.errors import EXIT_PERMISSION, RequestError
from jalien.wire.messages import Record, Reply, Request
from jalien.wire.monitor_api import (
    AgentReport,
    LogsReport,
    MonitorApiError,
    SiteReport,
    SpyReport,
)

SPY_USAGE = "usage: spy <jobId> workdir|nodeinfo|stdout|stderr|<file>"
LOGS_USAGE = "usage: logs vobox <CE> [-n N] | logs job <jobId> [-n N]"
LOGS_DEFAULT = 100  # lines


def _message(request: Request, kind: type | tuple[type, ...]) -> object:
    if not request.data:
        raise jalien_error(EINVAL, f"{request.command}: no report in the request's data")
    try:
        return monitor_api.decode(request.data[0], kind)
    except MonitorApiError as exc:
        raise jalien_error(EINVAL, f"{request.command}: {exc}") from None


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


class MonitorCommands:
    def __init__(
        self,
        table: CommandTable,
        spy: SpyDesk,
        grid: GridView,
        job_owner: dict[int, str] | None = None,
        logs: LogsDesk | None = None,
    ) -> None:
        self.table = table
        self.spy_desk = spy
        self.logs_desk = logs
        self.grid = grid
        self.job_owner = job_owner if job_owner is not None else {}  # JobService.live

    def register(self) -> None:
        add = self.table.add
        add(
            "spy",
            self.spy,
            "a running job seen from outside: " + SPY_USAGE.removeprefix("usage: "),
            action=A.SPY,
            args=Args(min=2, max=2, words=True, usage=SPY_USAGE),
        )
        add(
            "gridstatus",
            self.gridstatus,
            "the grid as its sites report it: CEs (slots, agents, waiting), agents, errors",
            action=A.SPY,
        )
        add(
            "spyReport",
            self.spy_report,
            "site call: a JobAgent's answer to spy",
            action=A.REPORT,
            raw=True,
        )
        if self.logs_desk is not None:
            add(
                "logs",
                self.logs,
                "a VoBox's or a running job's JobAgent's recent log lines: "
                + LOGS_USAGE.removeprefix("usage: "),
                action=A.ADMIN,
                args=Args(valued=("n",), min=2, max=2, usage=LOGS_USAGE),
            )
            add(
                "logsReport",
                self.logs_report,
                "site call: a VoBox's or a JobAgent's answer to logs",
                action=A.REPORT,
                raw=True,
            )
        add(
            "monitor.report",
            self.report,
            "site call: a VoBox's or a JobAgent's monitoring report",
            action=A.REPORT,
            raw=True,
        )

    async def spy(self, session: Session, opts: Options) -> list[Record]:
        job, what = opts.args
        try:
            job_id = int(job)
        except ValueError:
            raise jalien_error(EINVAL, f"not a job id: {job!r}") from None
        report = await self.spy_desk.ask(session.identity, job_id, what)
        return [{"queueId": str(job_id), "what": report.what, "message": report.text}]

    async def logs(self, session: Session, opts: Options) -> list[Record]:
        assert self.logs_desk is not None
        kind, target = opts.args
        lines = opts.number("n", LOGS_DEFAULT)
        if kind == "vobox":
            report = await self.logs_desk.vobox(target, lines)
        elif kind == "job":
            try:
                job_id = int(target)
            except ValueError:
                raise jalien_error(EINVAL, f"not a job id: {target!r}") from None
            report = await self.logs_desk.job(job_id, lines)
        else:
            raise jalien_error(EINVAL, LOGS_USAGE)
        return [
            {"target": f"{kind} {target}", "lines": str(len(report.lines)),
             "total": str(report.total), "message": "\n".join(report.lines)}
        ]  # fmt: skip

    def logs_report(self, session: Session, request: Request) -> Reply:
        report = _message(request, LogsReport)
        assert isinstance(report, LogsReport)
        assert self.logs_desk is not None
        self.logs_desk.answer(session.identity, report)
        return Reply(metadata=session.metadata())

    def gridstatus(self, session: Session, args: list[str]) -> list[Record]:
        user = None if policy.is_admin(session.identity) else session.user
        snap = self.grid.snapshot(user)
        now = snap.time
        records: list[Record] = []
        lines = [f"{'CE':<40} {'slots':>5} {'run':>4} {'queued':>6} {'waiting':>7} reported"]
        for state in snap.sites:
            r = state.report
            lines.append(
                f"{r.site + '/' + r.ce:<40} {r.max_running:>5} {r.running:>4} {r.queued:>6} "
                f"{r.waiting:>7} {_ago(now - state.received)}"
            )
            records.append(
                {
                    "site": r.site,
                    "ce": r.ce,
                    "slots": str(r.max_running),
                    "running": str(r.running),
                    "queued": str(r.queued),
                    "waiting": str(r.waiting),
                    "reported": str(int(state.received)),
                }
            )
        lines.append(f"agents: {len(snap.agents)}")
        for agent in snap.agents[-50:]:
            a = agent.report
            use = a.usage
            doing = f"job {a.queue_id}" if a.queue_id else "idle"
            if use is not None and a.queue_id:
                doing += f" cpu={use.cpu:.1f}s rss={use.rss // 1024}kB"
            lines.append(f"  {a.node:<30} {a.ce:<24} {doing} ({_ago(now - agent.received)})")
        if snap.errors:
            lines.append("recent errors:")
            lines += [f"  {time.strftime('%H:%M:%S', time.gmtime(e.time))} {e.where}: {e.text}"
                      for e in snap.errors[-20:]]  # fmt: skip
        records.append({"message": "\n".join(lines)})
        return records

    def spy_report(self, session: Session, request: Request) -> Reply:
        report = _message(request, SpyReport)
        assert isinstance(report, SpyReport)
        self.spy_desk.answer(session.identity, report)
        return Reply(metadata=session.metadata())

    def report(self, session: Session, request: Request) -> Reply:
        message = _message(request, (SiteReport, AgentReport))
        identity = session.identity
        if isinstance(message, SiteReport):
            if identity.kind not in (IdentityKind.HOST, IdentityKind.ADMIN):
                raise RequestError("Permission denied: a site report comes from a VoBox",
                                   EXIT_PERMISSION)  # fmt: skip
            try:
                self.grid.site(identity.login, message)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            if self.logs_desk is not None:  # `logs vobox CE` asks on this session
                self.logs_desk.site_seen(message.ce, identity.login, session)
        else:
            assert isinstance(message, AgentReport)
            key = f"{identity.serial or identity.login}:{message.node}"
            self.grid.agent(key, message, self.job_owner.get(message.queue_id, ""))
        return Reply(metadata=session.metadata())
