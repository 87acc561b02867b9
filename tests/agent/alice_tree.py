"""A small package tree laid out as ALICE's CVMFS repository, for the tests: ``BASE/1.0``
(sets ``BASEDIR``, as ALICE's does), ``GenLib`` (two versions, an executable each) and
``Analysis/v2-1``, whose modulefile loads ``GenLib/v1-1``; its executable calls GenLib's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARCH = "el9-x86_64"

BASE = """#%Module1.0
# ALICE's BASE module: where the packages are, from where this modulefile is
set here [file normalize $ModulesCurrentModulefile]
set base [file dirname [file dirname [file dirname [file dirname $here]]]]
setenv BASEDIR $base/Packages
"""

MODULE = """#%Module1.0
proc ModulesHelp {{ }} {{
  puts stderr "test Modulefile for {name} {version}"
}}
set version {version}
module-whatis "test Modulefile for {name} {version}"
# Dependencies
module load BASE/1.0 {deps}
# Our environment
set {upper}_ROOT $::env(BASEDIR)/{name}/$version
setenv {upper}_ROOT ${upper}_ROOT
setenv {upper}_VERSION $version
prepend-path PATH ${upper}_ROOT/bin
"""

GENLIB = """#!/bin/sh
echo "genlib {version} says ${{1:-hello}}"
"""

ANALYSIS = """#!/bin/sh
# needs GenLib on PATH: the module's dependency put it there
genlib-hello "from analysis" || exit 7
echo "analysis $ANALYSIS_VERSION with GenLib $GENLIB_VERSION at $GENLIB_ROOT"
"""


def _package(arch_dir: Path, name: str, version: str, deps: str, exe: str, text: str) -> None:
    module = arch_dir / "Modules" / "modulefiles" / name / version
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(MODULE.format(name=name, version=version, deps=deps, upper=name.upper()))
    binary = arch_dir / "Packages" / name / version / "bin" / exe
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(text)
    binary.chmod(0o755)


def make_tree(root: Path, arch: str = ARCH) -> Path:
    """The tree under *root* (made): *root* is what JALIEN_PACKAGES_DIR names."""
    arch_dir = root / arch
    base = arch_dir / "Modules" / "modulefiles" / "BASE" / "1.0"
    base.parent.mkdir(parents=True)
    base.write_text(BASE)
    (base.parent / ".version").write_text("#%Module1.0\nset ModulesVersion 1.0\n")
    for version in ("v1-0", "v1-1"):
        _package(arch_dir, "GenLib", version, "", "genlib-hello", GENLIB.format(version=version))
    _package(arch_dir, "Analysis", "v2-1", "GenLib/v1-1", "analysis-run", ANALYSIS)
    return root


LISTING = [
    "VO_ALICE@Analysis::v2-1",
    "VO_ALICE@BASE::1.0",
    "VO_ALICE@GenLib::v1-0",
    "VO_ALICE@GenLib::v1-1",
]


def need_modulecmd() -> str:
    """Environment Modules' modulecmd (jalien.sh's TEST_PACKAGES); skipped loudly without
    it, a failure in CI."""
    found = shutil.which("modulecmd")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("modulecmd is missing: install environment-modules (jalien.sh)")
        pytest.skip("SKIPPED LOUDLY: no modulecmd (apt-get install environment-modules)")
    return found
