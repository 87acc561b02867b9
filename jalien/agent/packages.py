"""The worker node's software, laid out as ALICE's CVMFS repository is, set up as ``alienv``
sets it up: through Environment Modules.

The tree (``JALIEN_PACKAGES_DIR`` is its root, ``/cvmfs/alice.cern.ch`` on a real site)::

    <root>/<arch>/Modules/modulefiles/<Package>/<version>   a Tcl modulefile each
    <root>/<arch>/Packages/<Package>/<version>/...          the package itself (bin/, lib/)

``<arch>`` is ``JALIEN_PACKAGES_ARCH`` (``el9-x86_64``, ...); unset, the only architecture
the root has, or the one named after this host's OS (``el<N>-<machine>`` on the RHEL
family, ``ubuntu<NNNN>_<machine>`` on Ubuntu) when there are several. A modulefile loads
its dependencies itself (``module load BASE/1.0 ROOT/v6-30-1``: ALICE's ``BASE`` module
sets ``BASEDIR`` to the ``Packages`` directory), so a job names only what it uses.

What the node offers is what ``alienv q`` lists: one ``VO_ALICE@<Package>::<version>`` per
modulefile (``listing``, a directory scan: no process). A JDL's
``Packages = {"VO_ALICE@O2::v1-1", ...}`` is loaded as ``alienv printenv`` does it:
``VO_ALICE@`` dropped, ``::`` made ``/``, all of them at once with ``modulecmd sh load``
(MODULEPATH = the tree's modulefiles), whose shell code a ``/bin/sh`` evaluates before it
prints its environment (``env -0``): that environment, with the modules' changes and their
dependencies', is the payload's. A module that is missing or fails is a ``PackageError``
with modulecmd's own words (the job ends ERROR_IB).

The module system is Debian's ``environment-modules`` (``modulecmd``, Modules 5; ALICE's
modulefiles are Tcl); ``JALIEN_PACKAGES_MODULECMD`` names another ``modulecmd``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from jalien.wire import packages as names

MODULES = ("Modules", "modulefiles")
LOAD_TIMEOUT = 120.0  # seconds modulecmd may take (a cold CVMFS cache is slow)
MAX_OUTPUT = 16 << 20  # bytes of environment read back
# what the shell adds to the environment it prints, not the modules
_SHELL_NOISE = ("_", "SHLVL", "OLDPWD")
# sh: evaluate modulecmd's shell code (it says "test 0 = 1;" when a load fails), then
# print the whole environment NUL-separated; "$0" is modulecmd, "$@" the modules
_LOAD = 'out="$("$0" sh load "$@")" || exit 3; eval "$out" || exit 4; exec env -0'


class PackageError(Exception):
    """A package the JDL asks for that this node cannot provide; the message says why."""


def _os_arch() -> str:
    """This host's name in ALICE's architectures (``el9-x86_64``, ``ubuntu2204_x86-64``)."""
    machine = platform.machine() or "x86_64"
    fields: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    except OSError:
        return ""
    family = f"{fields.get('ID', '')} {fields.get('ID_LIKE', '')}"
    major = fields.get("VERSION_ID", "").split(".")[0]
    if any(x in family for x in ("rhel", "centos", "fedora")):
        return f"el{major}-{machine}"
    if "ubuntu" in family:
        return f"ubuntu{fields.get('VERSION_ID', '').replace('.', '')}_{machine.replace('_', '-')}"
    return ""


def detect_arch(root: Path) -> str:
    """The architecture directory to use under *root* (see the module docstring)."""
    try:
        found = sorted(d.name for d in root.iterdir() if d.joinpath(*MODULES).is_dir())
    except OSError as exc:
        raise PackageError(f"package tree {root}: {exc.strerror}") from None
    if len(found) == 1:
        return found[0]
    mine = _os_arch()
    if mine in found:
        return mine
    if not found:
        raise PackageError(f"package tree {root}: no <arch>/Modules/modulefiles below it")
    raise PackageError(
        f"package tree {root} has {', '.join(found)}: set JALIEN_PACKAGES_ARCH to one of them"
    )


class PackageTree:
    """One CVMFS-layout tree at one architecture, and the modulecmd that loads from it."""

    def __init__(self, root: str | os.PathLike[str], arch: str, modulecmd: str) -> None:
        self.root = Path(root)
        self.arch = arch
        self.modulecmd = modulecmd
        self.modulepath = self.root / arch / Path(*MODULES)

    @classmethod
    def open(cls, root: str, arch: str = "", modulecmd: str = "") -> PackageTree:
        """The tree at *root* (its architecture found when not given), checked; a
        PackageError says what is wrong (no such directory, no modulecmd)."""
        base = Path(root)
        if not base.is_dir():
            raise PackageError(f"package tree {root} is not a directory")
        arch = arch or detect_arch(base)
        tree_dir = base / arch / Path(*MODULES)
        if not tree_dir.is_dir():
            raise PackageError(f"package tree {root}: {tree_dir} is not a directory")
        command = shutil.which(modulecmd or "modulecmd")
        if command is None:
            raise PackageError(
                f"no {modulecmd or 'modulecmd'} to load packages with: install Environment "
                "Modules (Debian: environment-modules) or set JALIEN_PACKAGES_MODULECMD"
            )
        return cls(base, arch, command)

    @property
    def where(self) -> str:
        return f"{self.root}/{self.arch}"

    def listing(self) -> list[str]:
        """``VO_ALICE@<Package>::<version>`` for every modulefile, sorted (``alienv q``).
        Hidden names (``.version``, ``.modulerc``) and names that are no package name are
        left out."""
        out: list[str] = []
        try:
            packages = list(os.scandir(self.modulepath))
        except OSError as exc:
            raise PackageError(f"package tree {self.modulepath}: {exc.strerror}") from None
        for package in packages:
            if package.name.startswith(".") or not package.is_dir():
                continue
            try:
                versions = list(os.scandir(package.path))
            except OSError:
                continue
            for version in versions:
                if version.name.startswith(".") or version.is_dir():
                    continue
                full = names.full_name(package.name, version.name)
                try:
                    names.split(full)
                except names.PackageNameError:
                    continue
                out.append(full)
        return sorted(out)

    def modules(self, specs: Sequence[str]) -> list[str]:
        """JDL names -> module names: ``VO_ALICE@ROOT::v6-30`` -> ``ROOT/v6-30``."""
        out = []
        for spec in specs:
            try:
                name, version = names.split(spec)
            except names.PackageNameError as exc:
                raise PackageError(str(exc)) from None
            out.append(f"{name}/{version}" if version else name)
        return out

    async def load(
        self, specs: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike[str]
    ) -> dict[str, str]:
        """*env* with the modules of *specs* (and their dependencies) loaded."""
        modules = self.modules(specs)
        child = dict(env)
        child["MODULEPATH"] = str(self.modulepath)
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", _LOAD, self.modulecmd, *modules,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=child, cwd=str(cwd),
                limit=MAX_OUTPUT,
            )  # fmt: skip
        except OSError as exc:
            raise PackageError(f"cannot run {self.modulecmd}: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), LOAD_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PackageError(
                f"loading {' '.join(modules)} took more than {LOAD_TIMEOUT:g} s"
            ) from None
        if proc.returncode:
            said = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
            errors = [ln for ln in said if ln.startswith("ERROR")] or said[-3:]
            raise PackageError(
                f"packages {', '.join(specs)} from {self.where}: "
                + ("; ".join(errors) or f"{self.modulecmd} failed ({proc.returncode})")
            )
        loaded: dict[str, str] = {}
        for item in out.split(b"\0"):
            name, eq, value = item.partition(b"=")
            if eq and name:
                loaded[name.decode(errors="replace")] = value.decode(errors="replace")
        for noise in _SHELL_NOISE:
            if noise not in env:
                loaded.pop(noise, None)
        return loaded


class Advertised:
    """What a node tells central about its packages: the digest of its listing and, when
    central asks, the listing; read again every *refresh* seconds (in a thread: a CVMFS
    directory scan may wait on the network)."""

    def __init__(
        self,
        tree: PackageTree | None,
        refresh: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tree = tree
        self.refresh = refresh
        self.clock = clock
        self.packages: list[str] = []
        self.digest = ""
        self.error = ""  # the last listing's failure, if any
        self._read_at: float | None = None

    async def current(self) -> tuple[str, list[str]]:
        """(digest, listing); ("", []) for a node without a tree."""
        if self.tree is None:
            return "", []
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.refresh:
            self._read_at = now
            try:
                self.packages = await asyncio.to_thread(self.tree.listing)
                self.error = ""
            except PackageError as exc:  # keep the last listing; say why once per refresh
                self.error = str(exc)
            self.digest = names.digest(self.packages)
        return self.digest, self.packages

    async def offer_fields(self, with_list: bool) -> dict[str, object]:
        """The JobOffer fields: a node without a tree offers no packages (``[]``), a node
        with one its digest and root, and the list when *with_list*."""
        if self.tree is None:
            return {"packages": []}
        digest, listing = await self.current()
        fields: dict[str, object] = {"packages_digest": digest, "packages_root": self.tree.where}
        if with_list:
            fields["packages"] = list(listing)
        return fields
