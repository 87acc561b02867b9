"""What the agent needs to know about one matched job, as plain typed data.

The JDL parser lives in the jobs service, which this service may not import; the role turns
central's getMatchJob answer (JDL text included) into a ``JobSpec`` and hands it over.
"""

from __future__ import annotations

import msgspec


class OutputItem(msgspec.Struct, frozen=True, kw_only=True):
    """One OutputFile (``members`` empty: the file itself, a glob allowed) or OutputArchive
    (a zip named ``name`` made of the sandbox files matching ``members``)."""

    name: str
    members: list[str] = []
    archive: bool = False
    specs: str = "disk:1"  # where the upload goes, as cp's access specs ("disk:2", SE names)


class JobSpec(msgspec.Struct, kw_only=True):
    queue_id: int
    user: str
    output_dir: str  # the LFN directory the outputs go to (trailing slash)
    executable: str  # a local absolute path on the node, or an LFN to download
    arguments: list[str] = []
    inputs: list[str] = []  # LFNs (InputFile and InputData) downloaded into the sandbox
    outputs: list[OutputItem] = []
    packages: list[str] = []  # "VO_ALICE@ROOT::v6-30"
    ttl: int = 3600  # wall seconds the payload may run
    memory: int = 0  # bytes of PSS (RSS where PSS is unreadable) the tree may use; 0: no limit
    disk: int = 0  # bytes the sandbox may hold; 0: no limit
    token_cert: str = ""  # the job token (PEM), the payload's and the agent's identity for it
    token_key: str = ""
