"""Build jalien-bin in every distribution shape and measure each: the figures of
packaging/README.md.

    .venv/bin/python packaging/measure_modes.py [--scale 1.0] [--modes a,b,...]

Each shape is built by packaging/build_binary.sh --mode M (ccache makes all but the first
build quick), kept in dist/modes/M/ and measured by bench/bench_binary.py --json. The last
build is the default shape again, so dist/jalien-bin is left as the build script makes it.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build"))
from nuitka_options import DEFAULT_MODE, MODES  # noqa: E402

DIST = ROOT / "dist"


def build(mode: str) -> tuple[Path, float]:
    t0 = time.monotonic()
    subprocess.run([str(ROOT / "packaging" / "build_binary.sh"), "--mode", mode], check=True)
    seconds = time.monotonic() - t0
    keep = DIST / "modes" / mode
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    binary = DIST / "jalien-bin"
    if binary.is_symlink():  # standalone: the folder, and a link into it
        shutil.copytree(DIST / "jalien-bin.dist", keep / "jalien-bin.dist", symlinks=True)
        (keep / "jalien-bin").symlink_to("jalien-bin.dist/jalien-bin")
    else:
        shutil.copy2(binary, keep / "jalien-bin")
    return keep / "jalien-bin", seconds


def bench(binary: Path, scale: float, baseline: bool) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_binary.py"), "--json"]
    cmd += ["--scale", str(scale), "--bin", str(binary)]
    if not baseline:
        cmd.append("--no-baseline")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    results = {}
    for mode in modes:
        binary, seconds = build(mode)
        results[mode] = (bench(binary, args.scale, baseline=mode == modes[-1]), seconds)
    if modes[-1] != DEFAULT_MODE:
        build(DEFAULT_MODE)
    print("| shape | size | warm | cold | first start | build (ccache warm) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, (figures, seconds) in results.items():
        row = figures["rows"]["jalien-bin --version"]
        print(
            f"| {mode} | {row['size_mb']:.1f} MB | {row['warm_ms']:.0f} ms | "
            f"{row['cold_ms']:.0f} ms (max {row['cold_max_ms']:.0f}) | {row['first_ms']:.0f} ms "
            f"| {seconds:.0f} s |"
        )
    last = results[modes[-1]][0]
    for name, row in last["rows"].items():
        if name != "jalien-bin --version":
            print(
                f"| {name} | | {row['warm_ms']:.0f} ms | {row['cold_ms']:.0f} ms "
                f"(max {row['cold_max_ms']:.0f}) | | |"
            )
    print(f"\nruns: {last['runs']}; page cache dropped by drop_caches: {last['drop_caches']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
