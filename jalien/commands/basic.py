"""Session and server commands every level answers: commandlist, whoami, pwd, ping, motd,
version, uptime."""

from __future__ import annotations

import os
import time

from jalien.auth import policy
from jalien.auth.policy import Action
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.version import JALIEN_COMPAT_VERSION, __version__
from jalien.wire.messages import Record

HOST = os.uname().nodename  # once: ping is the command benchmarks hammer

INFO = Action.INFO


class BasicCommands:
    """The commands of the session itself; *started* is the server's start time."""

    def __init__(self, table: CommandTable, *, motd: str, started: float | None = None) -> None:
        self.table = table
        self.motd_text = motd
        self.started = time.time() if started is None else started

    def register(self) -> None:
        add = self.table.add
        add("commandlist", self.commandlist, "list the commands this server knows", action=INFO)
        add("whoami", self.whoami, "the account of this session", action=INFO)
        add("pwd", self.pwd, "the current directory", action=INFO)
        add("ping", self.ping, "a round trip to the server", action=INFO)
        add("motd", self.motd, "message of the day", action=INFO)
        add("version", self.version, "server version", action=INFO)
        add("uptime", self.uptime, "how long the server has run and how busy it is", action=INFO)

    def commandlist(self, session: Session, args: list[str]) -> list[Record]:
        """The commands this caller may run (a user is not offered the site calls): those
        with an action, or one of the actions its arguments may resolve to, the policy
        allows for the caller's identity kind."""
        identity = session.identity
        names = []
        for name in self.table.names():
            command = self.table.get(name)
            if command and any(policy.allows(identity, a) for a in policy.possible(command.action)):
                names.append(name)
        return [{"commandlist": name, "message": name} for name in names]

    def whoami(self, session: Session, args: list[str]) -> list[Record]:
        identity = session.identity
        record: Record = {"message": identity.login, "user": identity.login}
        if "-v" in args:
            kind = identity.kind.value if identity.kind is not None else ""
            record.update(
                dn=identity.dn, roles=",".join(identity.roles), home=identity.home, kind=kind
            )
            record["message"] = (
                f"{identity.login}\n{identity.dn}\nroles: {record['roles']}\nkind: {kind}"
            )
        return [record]

    def pwd(self, session: Session, args: list[str]) -> list[Record]:
        return [{"message": session.cwd, "pwd": session.cwd}]

    def ping(self, session: Session, args: list[str]) -> list[Record]:
        return [{"message": "pong", "servertime": f"{time.time():.6f}", "host": HOST}]

    def motd(self, session: Session, args: list[str]) -> list[Record]:
        return [{"message": self.motd_text}]

    def version(self, session: Session, args: list[str]) -> list[Record]:
        text = f"jalien {__version__} (JAliEn {JALIEN_COMPAT_VERSION} compatible)"
        return [{"message": text, "version": __version__, "jalien_compat": JALIEN_COMPAT_VERSION}]

    def uptime(self, session: Session, args: list[str]) -> list[Record]:
        seconds = int(time.time() - self.started)
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        text = f"up {days}d {hours:02d}:{minutes:02d}:{secs:02d}"
        load = os.getloadavg()
        return [
            {
                "message": f"{text}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                "uptime": str(seconds),
                "load": f"{load[0]:.2f}",
            }
        ]
