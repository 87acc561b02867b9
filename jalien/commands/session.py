"""The state of one client session: who, where (cwd), and how to reach its client."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def user(self) -> str:
        return self.identity.login

    def metadata(self) -> dict[str, str]:
        """What JAliEn puts in every reply's metadata (alien.py needs user and currentdir)."""
        return {"user": self.identity.login, "currentdir": self.cwd, "site": self.site}
