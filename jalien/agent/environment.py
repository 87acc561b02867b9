"""The payload's environment: where the grid is (the agent's local socket), who it is (the
job token), where it lives (the sandbox); its packages are loaded into it before the
contract is added (``agent.packages``: ALICE's CVMFS layout through Environment Modules).

The agent's own contract variables (``JALIEN_*``: its jobagent token above all) and user
credentials (``X509_USER_*``) are removed before anything is added, and again after the
packages: the payload sees only the job's identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jalien.agent.sandbox import Sandbox

DROPPED_PREFIXES = ("JALIEN_", "ALIENPY_")
DROPPED = frozenset({"X509_USER_PROXY", "X509_USER_CERT", "X509_USER_KEY"})


@dataclass(frozen=True)
class Endpoint:
    """The agent's local socket, as the payload reaches it."""

    host: str
    port: int
    ws_port: int


def clean_environment(base: Mapping[str, str], sandbox: Sandbox) -> dict[str, str]:
    """The agent's environment without its own contract and credentials, in the sandbox
    (HOME, PWD, TMPDIR, TMP): what the packages are loaded into."""
    env = {k: v for k, v in base.items() if k not in DROPPED and not k.startswith(DROPPED_PREFIXES)}
    env.update(
        HOME=str(sandbox.root),
        PWD=str(sandbox.root),
        TMPDIR=str(sandbox.tmp),
        TMP=str(sandbox.tmp),
    )
    return env


def payload_environment(
    base: Mapping[str, str],
    *,
    sandbox: Sandbox,
    queue_id: int,
    user: str,
    site: str,
    endpoint: Endpoint | None,
    token_cert: str,
    token_key: str,
) -> dict[str, str]:
    """The payload's whole environment: *base* (the agent's, or what its packages made of
    ``clean_environment``) cleaned, then the contract."""
    env = clean_environment(base, sandbox)
    if endpoint is not None:  # none on a node without network (the agent's spool)
        env.update(
            JALIEN_HOST=endpoint.host,
            JALIEN_PORT=str(endpoint.port),
            JALIEN_WSPORT=str(endpoint.ws_port),
        )
    env.update(
        JALIEN_TOKEN_CERT=token_cert,
        JALIEN_TOKEN_KEY=token_key,
        ALIEN_PROC_ID=str(queue_id),
        ALIEN_JOB_ID=str(queue_id),
        ALIEN_USER=user,
        ALIEN_SITE=site,
    )
    return env
