"""The state of one client session: who, where (cwd), and how to reach its client."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jalien.catalogue.paths import BadPath, resolve
from jalien.commands.errno import EINVAL, jalien_error
from jalien.net.identity import Identity


@dataclass(slots=True, eq=False)
class Session:
    identity: Identity
    cwd: str
    site: str
    personality: str
    push: Any = None
    opened: float = field(default_factory=time.time)
    previous_cwd: str = ""
    prepared: bool = False  # its home was made (before its first data command)
    closed: bool = False  # its connection (or channel) went away: pushes reach no one

    @property
    def user(self) -> str:
        return self.identity.login

    def absolute(self, path: str) -> str:
        """A path a client gave (relative to the session's directory, ~ for its home, with or
        without JAliEn's alien: prefix) as an absolute LFN; hostile input is EINVAL."""
        path = path.removeprefix("alien://").removeprefix("alien:")
        try:
            return resolve(path, self.cwd, self.identity.home)
        except BadPath as exc:
            raise jalien_error(EINVAL, f"{exc}: {path[:200]!r}") from None

    def metadata(self) -> dict[str, str]:
        """What JAliEn puts in every reply's metadata (alien.py needs user and currentdir)."""
        return {"user": self.identity.login, "currentdir": self.cwd, "site": self.site}
