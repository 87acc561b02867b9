"""The JobAgent startup script: the whole contract between a VoBox and ``--role jobagent``.

Worker nodes have no LDAP and no configuration of their own: everything comes through the
environment the script exports (see docs/site.md):

``JALIEN_HOST``/``JALIEN_PORT`` (the VoBox's binary listener: the agent's calls are relayed
and cached there; ``JALIEN_SPOOL_DIR`` instead on nodes without network, docs/relay.md),
``X509_CERT_DIR``, ``JALIEN_TOKEN_CERT``/``JALIEN_TOKEN_KEY`` (a JobAgent
token, files mode 0600 in the agent's directory), ``JALIEN_SITE``, ``JALIEN_CE``,
``JALIEN_JOBAGENT_TTL``, ``JALIEN_CORES``, ``JALIEN_WORKDIR``, ``JALIEN_PACKAGES_DIR`` (with
``_ARCH`` and ``_MODULECMD``; and
``JALIEN_STATE_DIR``, the agent's directory, plus the site's ``jobagent_env``), after unsetting
every other ``JALIEN_*`` and ``X509_USER_*`` variable the VoBox's environment carried; then
it runs ``<jalien-bin> --role jobagent`` with stdout and stderr appended to the agent's log.

Every value is shell-quoted; the script and the token files are written 0600/0700 before
any content goes in (the key is never readable by others, not even for a moment).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

SCRIPT_NAME = "jobagent.sh"
LOG_NAME = "jobagent.log"
TOKEN_CERT_NAME = "tokencert.pem"
TOKEN_KEY_NAME = "tokenkey.pem"


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What every JobAgent of this VoBox gets (the token comes separately: it is renewed)."""

    host: str
    port: int
    ca_dir: str
    site: str
    ce: str
    ttl: int
    cores: int
    workdir: str = ""
    packages_dir: str = ""
    packages_arch: str = ""  # <arch> of the tree ("": the agent finds it)
    packages_modulecmd: str = ""  # Environment Modules' modulecmd ("": from PATH)
    command: tuple[str, ...]  # the jalien-bin command line, before ``--role jobagent``
    extra_env: tuple[tuple[str, str], ...] = ()
    spool_dir: str = ""  # worker nodes without network: the relay's spool, not host:port
    # the batch system copies the agent's files to the node (an ARC CE's session directory):
    # the script finds its token beside itself and logs there, not in the VoBox's directory
    staged: bool = False


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create *path* with *mode* from the start (never world-readable in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def agent_env(config: AgentConfig, token_cert: Path, token_key: Path) -> dict[str, str]:
    env = {
        "JALIEN_HOST": config.host,
        "JALIEN_PORT": str(config.port),
        "X509_CERT_DIR": config.ca_dir,
        "JALIEN_TOKEN_CERT": str(token_cert),
        "JALIEN_TOKEN_KEY": str(token_key),
        "JALIEN_SITE": config.site,
        "JALIEN_CE": config.ce,
        "JALIEN_JOBAGENT_TTL": str(config.ttl),
        "JALIEN_CORES": str(config.cores),
        "JALIEN_WORKDIR": config.workdir,
        "JALIEN_PACKAGES_DIR": config.packages_dir,
        "JALIEN_PACKAGES_ARCH": config.packages_arch,
        "JALIEN_PACKAGES_MODULECMD": config.packages_modulecmd,
        # beyond the contract: the agent's own state stays in its directory
        "JALIEN_STATE_DIR": str(token_cert.parent),
    }
    if config.spool_dir:  # no network on the node: the shared filesystem instead
        del env["JALIEN_HOST"], env["JALIEN_PORT"]
        env["JALIEN_SPOOL_DIR"] = config.spool_dir
    env.update(dict(config.extra_env))
    return env


def script_text(config: AgentConfig, env: Mapping[str, str], log: Path) -> str:
    lines = [
        "#!/bin/sh",
        f"# JobAgent of {config.ce} ({config.site}), written by the jalien VoBox on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]
    # the VoBox's own settings and credentials (inherited by fork, exported by sbatch) must
    # not reach the agent: it is configured by what follows only
    lines.append(
        "for name in $(env | sed -n 's/^\\(JALIEN_[A-Za-z0-9_]*\\)=.*/\\1/p'); "
        'do unset "$name"; done'
    )
    lines.append("unset X509_USER_PROXY X509_USER_CERT X509_USER_KEY X509_CERT_FILE")
    command: Sequence[str] = [*config.command, "--role", "jobagent"]
    if not config.staged:
        lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        lines.append(f"cd {shlex.quote(str(log.parent))} || exit 1")
        lines.append(f"exec {shlex.join(command)} >>{shlex.quote(str(log))} 2>&1")
        return "\n".join(lines) + "\n"
    # staged: the files are wherever the batch system put the script
    lines.append('here=$(cd "$(dirname "$0")" && pwd) || exit 1')
    beside = {"JALIEN_TOKEN_CERT": TOKEN_CERT_NAME, "JALIEN_TOKEN_KEY": TOKEN_KEY_NAME}
    for key, value in env.items():
        if key in beside:
            lines.append(f'export {key}="$here"/{beside[key]}')
        elif key == "JALIEN_STATE_DIR":
            lines.append(f'export {key}="$here"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    lines.append('cd "$here" || exit 1')
    lines.append(f'exec {shlex.join(command)} >>"$here"/{LOG_NAME} 2>&1')
    return "\n".join(lines) + "\n"


def write_agent_dir(
    directory: Path, config: AgentConfig, token_cert_pem: bytes, token_key_pem: bytes
) -> Path:
    """Make the agent's directory (0700): the token files (0600), the script (0700, as it
    names the key); its path is returned. The log goes to ``jobagent.log`` beside it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=False)
    cert, key = directory / TOKEN_CERT_NAME, directory / TOKEN_KEY_NAME
    write_private(key, token_key_pem)
    write_private(cert, token_cert_pem)
    script = directory / SCRIPT_NAME
    text = script_text(config, agent_env(config, cert, key), directory / LOG_NAME)
    write_private(script, text.encode(), 0o700)
    return script
