"""Nuitka options for ``jalien-bin``: the one place they are written.

    python build/nuitka_options.py --stage DIR --output-dir DIR [--mode MODE]
    python build/nuitka_options.py --stage DIR --describe [--mode MODE]

prints the Nuitka command line (one argument per line) that ``packaging/build_binary.sh``
runs, or "MODE packed|nuitka VERSION". DIR (the stage) holds ``jalien/`` as the wheel
installs it, with the compiled ``jalien/_fast/*.so``, and ``jalien_bin.py``, the entry point
(a copy of build/jalien_bin.py). Modes are the distribution shapes measured in
``packaging/README.md``; ``DEFAULT_MODE`` is the one chosen there; modes in ``PACKED_MODES``
are built standalone and then packed by build/pack_onefile.py.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The shapes measured in packaging/README.md (extra options on top of COMMON).
MODES: dict[str, list[str]] = {
    # a single file, zstd payload unpacked to a fresh temporary folder at every start
    "onefile": ["--mode=onefile"],
    # the same without compression: a bigger file, no decompression
    "onefile-nozstd": ["--mode=onefile", "--onefile-no-compression"],
    # a single file unpacked once per user and build into ~/.cache/jalien/<version>-<build id>
    # (XDG_CACHE_HOME honoured) and reused; files compressed one by one, so that a start
    # whose cache is complete skips the payload instead of decompressing it
    "onefile-cached": ["--mode=onefile", "--onefile-as-archive", "{cached_spec}"],
    # the same with one zstd stream (every start decompresses the whole payload to skip it)
    "onefile-cached-stream": ["--mode=onefile", "{cached_spec}"],
    # the same, uncompressed
    "onefile-cached-nozstd": ["--mode=onefile", "--onefile-no-compression", "{cached_spec}"],
    # a folder: dist/jalien-bin.dist/jalien-bin beside its shared libraries, nothing unpacked
    "standalone": ["--mode=standalone"],
    # the standalone folder packed behind build/launcher.c (build/pack_onefile.py): one file,
    # unpacked once per user and build with an atomic rename, then exec'd at every start
    "launcher": ["--mode=standalone"],
}
PACKED_MODES = {"launcher"}  # built standalone, then packed by build/pack_onefile.py
DEFAULT_MODE = "launcher"

# What the binary must hold and must not: the whole package (every role, whether or not the
# command line reaches it today), never the tests, the benchmarks or their tools.
INCLUDE_PACKAGES = ["jalien"]
# C accelerators of the standard library that Nuitka's anti-bloat leaves out by default,
# falling back to slower pure-Python code
INCLUDE_MODULES = ["_json", "_bisect"]
EXCLUDE_IMPORTS = [
    "tests",
    "bench",
    "pytest",
    "_pytest",
    "hypothesis",
    "websockets",
    "alienpy",
    "setuptools",
    "pip",
    "Cython",
    "mesonpy",
    "nuitka",
    # rich (cp's progress bars) imports pygments only for syntax highlighting and tracebacks,
    # which jalien never asks of it: 325 modules and minutes of C compilation saved
    "pygments",
]

COMMON = [
    "--static-libpython=yes",  # no libpython.so to find and relocate at start
    "--lto=no",  # a shorter C build (CI builds at every run); start-up is imports, not code
    "--jobs=2",
    "--python-flag=no_site",
    # Nuitka refuses arguments that look like `python -c CODE` (against programs that run
    # sys.executable -c by mistake), but users type -c in grid commands (`grep -c`, `find -c`)
    # and jalien never runs sys.executable with -c
    "--no-deployment-flag=self-execution",
    "--assume-yes-for-downloads",
    "--output-filename=jalien-bin",
    "--product-name=jalien",
    "--company-name=ALICE",
    "--file-description=ALICE grid middleware (JAliEn in Python)",
    f"--user-plugin={ROOT / 'build' / 'nuitka_plugin.py'}",
    f"--user-package-configuration-file={ROOT / 'build' / 'nuitka-package.config.yml'}",
    *(f"--include-package={name}" for name in INCLUDE_PACKAGES),
    *(f"--include-module={name}" for name in INCLUDE_MODULES),
    f"--nofollow-import-to={','.join(EXCLUDE_IMPORTS)}",
]


def jalien_version(stage: Path) -> str:
    text = (stage / "jalien" / "version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def numeric_version(version: str) -> str:
    """Nuitka's --product-version takes up to four numbers: '0.1.0rc1' -> '0.1.0'."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return ".".join(match.group(0).split(".")[:4]) if match else "0"


def build_id(stage: Path) -> str:
    """A digest of everything that goes into the binary: the staged package, Nuitka's version,
    the Python and the platform. Two builds of the same version with different code never
    share an unpack cache."""
    digest = hashlib.sha256()
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(stage)).encode() + b"\0")
        digest.update(path.read_bytes())
    digest.update(nuitka_version().encode())
    digest.update(sys.version.encode() + platform.machine().encode())
    return digest.hexdigest()[:12]


def nuitka_version() -> str:
    try:
        from nuitka.Version import getNuitkaVersion
    except ImportError:  # the tests read the options without Nuitka installed
        return "none"
    return getNuitkaVersion()


def cache_spec(stage: Path) -> str:
    """Where onefile-cached unpacks: per user (the user's cache dir), per version and build."""
    return f"{{CACHE_DIR}}/jalien/{jalien_version(stage)}-{build_id(stage)}"


def nuitka_args(mode: str, stage: Path, output_dir: Path) -> list[str]:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    version = jalien_version(stage)
    extra = [
        f"--onefile-tempdir-spec={cache_spec(stage)}" if arg == "{cached_spec}" else arg
        for arg in MODES[mode]
    ]
    return [
        *extra,
        *COMMON,
        f"--product-version={numeric_version(version)}",
        f"--file-version={numeric_version(version)}",
        f"--output-dir={output_dir}",
        f"--report={output_dir / 'jalien-bin.report.xml'}",
        str(stage / "jalien_bin.py"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=Path)
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--mode", default=DEFAULT_MODE, choices=sorted(MODES))
    parser.add_argument(
        "--describe", action="store_true", help="print the mode, 'packed' or not, the version"
    )
    args = parser.parse_args()
    if args.stage is None:
        parser.error("--stage is required")
    if args.describe:
        packed = "packed" if args.mode in PACKED_MODES else "nuitka"
        print(args.mode, packed, jalien_version(args.stage))
        return 0
    if args.output_dir is None:
        parser.error("--output-dir is required")
    print("\n".join(nuitka_args(args.mode, args.stage, args.output_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
