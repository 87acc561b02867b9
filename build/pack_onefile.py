"""Pack a Nuitka standalone folder behind build/launcher.c: one file, unpacked once per user
and build (the format and the reasons are in build/launcher.c and packaging/README.md).

    python build/pack_onefile.py --launcher L --dist DIR --version V --output FILE

FILE = launcher | zlib stream of records | 64-byte trailer. The trailer names the build
"<version>-<first 12 hex of the SHA-256 of the records>": the unpack cache is addressed by
content, so two different builds never share a folder, whatever their version says.
A record is: kind (u8: 0 end, 1 folder, 2 file, 3 symlink), name length (u16), name
(relative, '/'-separated), mode (u32), size (u64), then size bytes (file contents or link
target); all little-endian. Folders come before what they hold.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

MAGIC = b"JALIENPK"
TRAILER = struct.Struct("<8sQQII32s")
REC_END, REC_DIR, REC_FILE, REC_SYMLINK = 0, 1, 2, 3
BUILD_ID = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,30}")


def records(dist: Path) -> Iterator[bytes]:
    for top, dirs, files in os.walk(dist):
        dirs.sort()
        here = Path(top)
        for name in sorted(dirs) + sorted(files):
            path = here / name
            rel = path.relative_to(dist).as_posix().encode()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                kind, data = REC_SYMLINK, os.readlink(path).encode()
            elif stat.S_ISDIR(info.st_mode):
                kind, data = REC_DIR, b""
            elif stat.S_ISREG(info.st_mode):
                kind, data = REC_FILE, path.read_bytes()
            else:
                raise SystemExit(f"pack_onefile: {path} is neither file, folder nor link")
            mode = stat.S_IMODE(info.st_mode)
            yield struct.pack("<BH", kind, len(rel)) + rel + struct.pack("<IQ", mode, len(data))
            yield data
    yield bytes([REC_END])


def pack(launcher: Path, dist: Path, version: str, output: Path, level: int = 9) -> str:
    """Writes *output*; returns its build id."""
    if not (dist / "jalien-bin").is_file():
        raise SystemExit(f"pack_onefile: {dist} holds no jalien-bin")
    head = launcher.read_bytes()
    compressor = zlib.compressobj(level)
    digest = hashlib.sha256()
    crc, size = 0, 0
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(head)
        for chunk in [*records(dist), None]:
            if chunk is None:
                piece = compressor.flush()
            else:
                digest.update(chunk)
                piece = compressor.compress(chunk)
            out.write(piece)
            crc, size = zlib.crc32(piece, crc), size + len(piece)
        build_id = f"{version}-{digest.hexdigest()[:12]}"
        if not BUILD_ID.fullmatch(build_id):
            raise SystemExit(f"pack_onefile: build id {build_id!r} is not a safe folder name")
        out.write(TRAILER.pack(MAGIC, len(head), size, crc, 0, build_id.encode()))
    tmp.chmod(0o755)
    tmp.replace(output)
    return build_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", type=Path, required=True)
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--version", required=True, help="jalien's version")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--level", type=int, default=9, help="zlib level (1-9)")
    args = parser.parse_args()
    print(pack(args.launcher, args.dist, args.version, args.output, args.level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
