"""A real OpenLDAP server (Debian's slapd) on loopback for the directory tests.

Its own configuration directory (a slapd.conf: core.schema and jalien's
packaging/ldap/jalien.schema, one mdb database for the base, a root DN with a password),
loaded offline with slapadd, then started in the foreground on a free port of 127.0.0.1
and killed at the end: no system-wide state. ``python tests/ldap_server.py DIR`` starts one
with the sample tree for a look by hand (docs/ldap.md).

Without slapd the tests that need it are skipped loudly outside CI and fail in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "packaging" / "ldap" / "jalien.schema"
CORE_SCHEMA = Path("/etc/ldap/schema/core.schema")
BASE = "o=alice,dc=cern,dc=ch"
ROOT_DN = f"cn=admin,{BASE}"
PASSWORD = "jalien-test-secret"
START_TIMEOUT = 20.0


def unavailable(reason: str) -> None:
    """Skip loudly outside CI; fail in CI."""
    import pytest

    message = f"LDAP tests cannot run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the LDAP configuration must be tested)")
    pytest.skip("SKIPPED LOUDLY: " + message + " (set CI=true to make this an error)")


def binaries() -> tuple[str, str] | None:
    found = [shutil.which(b) or f"/usr/sbin/{b}" for b in ("slapd", "slapadd")]
    if not all(os.path.exists(b) for b in found) or not CORE_SCHEMA.exists():
        return None
    return found[0], found[1]


@dataclass
class Person:
    login: str
    dns: Sequence[str] = ()
    home: str = ""
    name: str = ""
    email: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # quota limits and the like


@dataclass
class CeEntry:
    site: str
    name: str
    attrs: Mapping[str, str] = field(default_factory=dict)


def _entry(dn: str, classes: Iterable[str], attrs: Mapping[str, object]) -> str:
    lines = [f"dn: {dn}", *(f"objectClass: {c}" for c in classes)]
    for key, value in attrs.items():
        for one in value if isinstance(value, list | tuple) else [value]:
            if one == "" or one is None:
                continue
            lines.append(f"{key}: {one}")
    return "\n".join(lines) + "\n"


def tree_ldif(
    people: Iterable[Person] = (),
    roles: Mapping[str, Iterable[str]] | None = None,
    ces: Iterable[CeEntry] = (),
    partitions: Mapping[str, Iterable[str]] | None = None,
    ses: Iterable[Mapping[str, object]] = (),
    base: str = BASE,
) -> str:
    """A JAliEn-like tree (docs/ldap.md) as LDIF."""
    out = [_entry(base, ["organization"], {"o": base.split(",")[0].split("=")[1]})]
    for ou in ("People", "Roles", "Sites", "Partitions", "SEs"):
        out.append(_entry(f"ou={ou},{base}", ["organizationalUnit"], {"ou": ou}))
    for p in people:
        attrs: dict[str, object] = {"uid": p.login, "subject": list(p.dns), "alienHome": p.home}
        attrs.update(gecos=p.name, email=p.email, **dict(p.extra))
        out.append(_entry(f"uid={p.login},ou=People,{base}", ["AliEnUser"], attrs))
    for role, members in (roles or {}).items():
        out.append(
            _entry(
                f"uid={role},ou=Roles,{base}", ["AliEnRole"], {"uid": role, "users": list(members)}
            )
        )
    sites = sorted({ce.site for ce in ces})
    for site in sites:
        out.append(_entry(f"ou={site},ou=Sites,{base}", ["organizationalUnit"], {"ou": site}))
        out.append(
            _entry(
                f"ou=Services,ou={site},ou=Sites,{base}", ["organizationalUnit"], {"ou": "Services"}
            )
        )
        out.append(
            _entry(
                f"ou=CE,ou=Services,ou={site},ou=Sites,{base}", ["organizationalUnit"], {"ou": "CE"}
            )
        )
    for ce in ces:
        dn = f"name={ce.name},ou=CE,ou=Services,ou={ce.site},ou=Sites,{base}"
        out.append(_entry(dn, ["AliEnCE"], {"name": ce.name, **dict(ce.attrs)}))
    for name, members in (partitions or {}).items():
        out.append(
            _entry(
                f"name={name},ou=Partitions,{base}",
                ["AliEnPartition"],
                {"name": name, "CEname": list(members)},
            )
        )
    for se in ses:
        out.append(_entry(f"name={se['name']},ou=SEs,{base}", ["AliEnSE"], dict(se)))
    return "\n".join(out)


class Slapd:
    """One slapd in *directory*, serving *ldif* at ``uri``; ``stop()`` kills it, ``start()``
    starts it again on the same port and data."""

    def __init__(self, directory: Path, ldif: str, base: str = BASE) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError("slapd/slapadd not installed (apt-get install slapd ldap-utils)")
        self.slapd, self.slapadd = found
        self.dir = directory
        self.base = base
        self.root_dn = f"cn=admin,{base}"
        self.password = PASSWORD
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "slapd.conf"
        self.conf.write_text(
            f"include {CORE_SCHEMA}\n"
            f"include {SCHEMA}\n"
            f"pidfile {directory}/slapd.pid\n"
            f"argsfile {directory}/slapd.args\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "database mdb\n"
            f'suffix "{base}"\n'
            f'rootdn "{self.root_dn}"\n'
            f"rootpw {self.password}\n"
            f"directory {data}\n"
            "maxsize 67108864\n"
            "access to * by * read\n"
        )
        (directory / "tree.ldif").write_text(ldif)
        done = subprocess.run(
            [self.slapadd, "-f", str(self.conf), "-l", str(directory / "tree.ldif")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"slapadd failed ({done.returncode}):\n{done.stderr[-3000:]}")

    def start(self) -> Slapd:
        log = open(self.dir / "slapd.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [self.slapd, "-f", str(self.conf), "-h", f"{self.uri}/", "-d", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not listen on {self.uri}:\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.dir / "slapd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill it (as a crash would): clients see the server gone."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


def sample_ldif() -> str:
    """A small grid: two users (one with two DNs), an admin, a VoBox host, a site with a CE."""
    people = [
        Person(
            "jdoe",
            ["/C=ch/O=jalien/OU=Users/CN=jdoe", "/C=ch/O=other/CN=John Doe"],
            name="John Doe",
        ),
        Person("alice", ["/C=ch/O=jalien/OU=Users/CN=alice"], extra={"maxNbFiles": "100"}),
        Person("gridadmin", ["/C=ch/O=jalien/OU=Users/CN=gridadmin"]),
    ]
    roles = {"admin": ["gridadmin"], "users": ["jdoe", "alice"], "alidaq": ["jdoe"]}
    ces = [
        CeEntry(
            "CERN",
            "LOCAL",
            {"host": "vobox.cern.ch", "maxjobs": "20", "maxqueuedjobs": "5", "TTL": "7200"},
        )
    ]
    return tree_ldif(people, roles, ces, {"default": ["ALICE::CERN::LOCAL"]})


if __name__ == "__main__":
    import sys

    where = Path(sys.argv[1] if len(sys.argv) > 1 else "run/ldap").resolve()
    server = Slapd(where, sample_ldif()).start()
    print(
        f"slapd serving {server.base} at {server.uri} (root {server.root_dn} / {server.password})"
    )
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
