"""Nuitka user plugin (``--user-plugin=build/nuitka_plugin.py``) for jalien-bin: strips the
shared libraries copied into the distribution.

Wheels ship some extension modules with their symbol tables and even debug info (uvloop's
loop.so is 13.6 MB, 2.6 MB once stripped); Nuitka copies them as they are. Every byte is
unpacked or fetched from CVMFS at some start, so the copies (never the originals in the venv)
lose what only a debugger reads. --strip-unneeded keeps the dynamic symbol table, which is
all the loader needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from nuitka.plugins.PluginBase import NuitkaPluginBase


class NuitkaPluginJalien(NuitkaPluginBase):
    plugin_name = "jalien"
    plugin_desc = "Strip the shared libraries copied into the distribution."

    def __init__(self) -> None:
        self.strip = shutil.which("strip")
        self.before = 0
        self.after = 0

    @classmethod
    def isRelevant(cls) -> bool:
        return os.name == "posix"

    def onCopiedDLL(self, dll_filename: str) -> None:
        if self.strip is None:
            return
        with open(dll_filename, "rb") as handle:
            if handle.read(4) != b"\x7fELF":
                return
        size = os.path.getsize(dll_filename)
        done = subprocess.run(
            [self.strip, "--strip-unneeded", dll_filename], capture_output=True, check=False
        )
        if done.returncode != 0:
            self.warning(f"could not strip {dll_filename}: {done.stderr.decode().strip()}")
            return
        self.before += size
        self.after += os.path.getsize(dll_filename)

    def onStandaloneDistributionFinished(self, dist_dir: str) -> None:
        if self.strip is None:
            self.warning("no 'strip' found: shared libraries left as they are (binutils)")
        elif self.before:
            before, after = self.before / 1e6, self.after / 1e6
            self.info(f"stripped shared libraries: {before:.1f} MB -> {after:.1f} MB")
