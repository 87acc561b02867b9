"""The payload's environment: where the grid is (the agent's local socket), who it is (the
job token), where it lives (the sandbox) and what software it asked for (packages).

Packages come from a read-only tree (CVMFS-like, ``JALIEN_PACKAGES_DIR``); a JDL's
``Packages = {"VO_ALICE@ROOT::v6-30"}`` names ``<dir>/ROOT/v6-30/env``, a text file of
``KEY=VALUE`` lines (``#`` comments, an optional ``export`` prefix, optional quotes) applied
in order. ``$VAR`` and ``${VAR}`` expand against the environment built so far, so
``PATH=$PACKAGE_DIR/bin:$PATH`` prepends; ``$PACKAGE_DIR`` is the version's directory.
Without ``::version`` the highest version present (by name) is used. The file is read, never
executed: a broken package cannot run code in the agent, and applying it costs no fork.

The agent's own contract variables (``JALIEN_*``: its jobagent token above all) and user
credentials (``X509_USER_*``) are removed before anything is added: the payload sees only
the job's identity.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jalien.agent.sandbox import Sandbox

DROPPED_PREFIXES = ("JALIEN_", "ALIENPY_")
DROPPED = frozenset({"X509_USER_PROXY", "X509_USER_CERT", "X509_USER_KEY"})
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class PackageError(Exception):
    """A package the JDL asks for that this node cannot provide; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """The agent's local socket, as the payload reaches it."""

    host: str
    port: int
    ws_port: int


def package_dir(root: str | os.PathLike[str], spec: str) -> Path:
    """``VO_ALICE@ROOT::v6-30`` -> ``<root>/ROOT/v6-30`` (checked to exist)."""
    if not root:
        raise PackageError(f"package {spec}: this node has no packages (JALIEN_PACKAGES_DIR)")
    name, _, version = spec.rpartition("@")[2].partition("::")
    if not _SAFE.match(name) or (version and not _SAFE.match(version)):
        raise PackageError(f"package {spec!r} is not a valid package name")
    base = Path(root) / name
    if not version:
        versions = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        if not versions:
            raise PackageError(f"package {spec}: {base} has no version")
        version = versions[-1]
    where = base / version
    if not (where / "env").is_file():
        raise PackageError(f"package {spec}: {where / 'env'} does not exist on this node")
    return where


def expand(value: str, env: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def read_env_file(path: Path, env: dict[str, str]) -> None:
    """Apply a package's ``env`` file to *env* (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PackageError(f"cannot read {path}: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not _NAME.match(name):
            raise PackageError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = expand(value, env)


def package_environment(
    root: str | os.PathLike[str], packages: list[str], env: dict[str, str]
) -> list[str]:
    """Apply every package in order; the directories used, for the job's trace."""
    used = []
    for spec in packages:
        where = package_dir(root, spec)
        env["PACKAGE_DIR"] = str(where)
        read_env_file(where / "env", env)
        used.append(str(where))
    env.pop("PACKAGE_DIR", None)
    return used


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
    packages_root: str = "",
    packages: list[str] | None = None,
) -> dict[str, str]:
    """The payload's whole environment (PackageError when a package is missing)."""
    env = {k: v for k, v in base.items() if k not in DROPPED and not k.startswith(DROPPED_PREFIXES)}
    env.update(
        HOME=str(sandbox.root),
        PWD=str(sandbox.root),
        TMPDIR=str(sandbox.tmp),
        TMP=str(sandbox.tmp),
    )
    if packages:
        package_environment(packages_root, packages, env)
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
