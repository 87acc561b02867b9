"""A job's sandbox: one private directory per job under the agent's work directory.

    <workdir>/jalien-job-<queueId>/      the payload's cwd and HOME; inputs land here,
        stdout, stderr                   the payload's output streams,
        tmp/                             its TMPDIR, with the job token (see write_token),
        <outputs>                        whatever it writes (OutputFile globs match here).

The directory is mode 0700 (other users of the node must not read a job's data) and is
removed when the job ends, whatever the outcome; one left by a crashed agent under the same
name is removed before reuse.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path


class SandboxError(Exception):
    """The sandbox could not be made (work directory missing or not writable)."""


class Sandbox:
    def __init__(self, workdir: str | os.PathLike[str], queue_id: int) -> None:
        self.root = Path(workdir) / f"jalien-job-{queue_id}"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr"

    def create(self) -> Sandbox:
        try:
            if self.root.exists():
                shutil.rmtree(self.root)
            self.root.mkdir(mode=0o700, parents=True)
            self.tmp.mkdir(mode=0o700)
        except OSError as exc:
            raise SandboxError(f"cannot make the sandbox {self.root}: {exc.strerror}") from None
        return self

    def write_token(self, cert_pem: str, key_pem: str) -> tuple[Path, Path]:
        """The job token as files (0600) in the payload's TMPDIR, under the names alien.py
        looks for there; their paths go into JALIEN_TOKEN_CERT/KEY. A path works for every
        key type, where alien.py 1.7.0 takes key *text* only in PKCS#1 RSA form (the job
        token's key is EC: jalien.auth.tokens)."""
        uid = os.getuid()
        paths = self.tmp / f"tokencert_{uid}.pem", self.tmp / f"tokenkey_{uid}.pem"
        try:
            for path, text in zip(paths, (cert_pem, key_pem), strict=True):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
        except OSError as exc:
            raise SandboxError(
                f"cannot write the job token in {self.tmp}: {exc.strerror}"
            ) from None
        return paths

    def disk_usage(self) -> int:
        """Bytes the sandbox occupies (allocated blocks, so sparse files count as they are)."""
        return tree_bytes(self.root)

    async def cleanup(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root, True)


def tree_bytes(root: Path) -> int:
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return total
