"""The built binary: start-up time and size, beside plain Python in the same run.

    python bench/bench_binary.py [--scale 1.0] [--bin dist/jalien-bin] [--json]

1. `jalien-bin --version` warm (page cache hot, unpack cache filled): median of N starts.
2. Cold: the page cache dropped before each start (as root: /proc/sys/vm/drop_caches;
   otherwise the pages of the binary, its unpacked files and Python's files are evicted with
   posix_fadvise, which leaves the system libraries cached).
3. First start: an empty unpack cache ($XDG_CACHE_HOME pointed at a new folder each time).
4. Size on disk (a standalone build counts its whole folder).
Baselines, same command, same run: `python -m jalien --version` with this interpreter (the
editable install of the source tree) and, when a build left its stage, the installed wheel.
Targets (issue 7): warm <= 100 ms, cold <= 150 ms, size <= 60 MB.
Without dist/jalien-bin (packaging/build_binary.sh makes it) prints "not built, skipping".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "dist" / ".nuitka" / "stage"
TARGETS = {"warm_ms": 100.0, "cold_ms": 150.0, "size_mb": 60.0}
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access(DROP_CACHES, os.W_OK)


def evict(paths: list[Path]) -> None:
    """Drop the page cache: all of it as root, else the pages of the given files."""
    if can_drop_caches():
        os.sync()
        DROP_CACHES.write_text("3\n")
        return
    for top in paths:
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        for path in files:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def start_ms(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - t0) * 1e3
    if done.returncode != 0 or not done.stdout.startswith(b"jalien "):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


def measure(cmd: list[str], env: dict[str, str], files: list[Path], runs: dict[str, int]):
    for _ in range(2):  # warm up: page cache, unpack cache
        start_ms(cmd, env)
    warm = [start_ms(cmd, env) for _ in range(runs["warm"])]
    cold = []
    for _ in range(runs["cold"]):
        evict(files)
        cold.append(start_ms(cmd, env))
    first = []
    for _ in range(runs["first"]):
        with tempfile.TemporaryDirectory(prefix="jalien-bench-cache-") as cache:
            first.append(start_ms(cmd, {**env, "XDG_CACHE_HOME": cache}))
    return {
        "warm_ms": statistics.median(warm),
        "warm_min_ms": min(warm),
        "cold_ms": statistics.median(cold),
        "cold_max_ms": max(cold),
        "first_ms": statistics.median(first),
    }


def size_mb(path: Path) -> float:
    real = path.resolve()
    if path.is_symlink() and real.parent.name.endswith(".dist"):  # standalone: the folder
        return sum(p.stat().st_size for p in real.parent.rglob("*") if p.is_file()) / 1e6
    return real.stat().st_size / 1e6


def python_files() -> list[Path]:
    base = Path(sys.base_prefix)
    return [Path(sys.prefix), base / "lib", ROOT / "jalien", ROOT / ".mesonpy-build", STAGE]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the run counts")
    parser.add_argument("--bin", type=Path, default=ROOT / "dist" / "jalien-bin")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-baseline", action="store_true", help="measure the binary only")
    args = parser.parse_args()
    if not args.bin.exists():
        print(f"bench_binary: {args.bin} not built, skipping (packaging/build_binary.sh)")
        return 0
    s = args.scale
    runs = {"warm": max(1, round(40 * s)), "cold": max(1, round(10 * s))}
    runs["first"] = max(1, round(5 * s))
    # a clean environment: what a worker node's job sees, more or less
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    cache_home = tempfile.mkdtemp(prefix="jalien-bench-home-")
    bin_env = {**env, "XDG_CACHE_HOME": cache_home}
    rows = {}
    try:
        binary = measure(
            [str(args.bin), "--version"],
            bin_env,
            [args.bin.resolve().parent, Path(cache_home)],
            runs,
        )
        binary["size_mb"] = size_mb(args.bin)
        rows["jalien-bin --version"] = binary
    finally:
        subprocess.run(["rm", "-rf", cache_home], check=False)
    if not args.no_baseline:
        py_env = {**env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        cmd = [sys.executable, "-m", "jalien", "--version"]
        rows["python -m jalien --version (editable)"] = measure(cmd, py_env, python_files(), runs)
        if (STAGE / "jalien").is_dir():
            # -S keeps the editable install's finder (a .pth in site-packages) from taking
            # `import jalien`; it hides the dependencies too, which --version never imports
            staged = {**py_env, "PYTHONPATH": str(STAGE)}
            cmd = [sys.executable, "-S", "-m", "jalien", "--version"]
            rows["python -S -m jalien --version (wheel)"] = measure(
                cmd, staged, python_files(), runs
            )
    if args.json:
        print(json.dumps({"runs": runs, "drop_caches": can_drop_caches(), "rows": rows}))
        return 0
    how = "drop_caches" if can_drop_caches() else "posix_fadvise on the files involved"
    print(f"== start-up of `--version` (runs: {runs}; cold = page cache dropped by {how})")
    print(f"  {'command':40s} {'warm':>8s} {'cold':>8s} {'first':>8s} {'size':>8s}")
    for name, row in rows.items():
        size = f"{row['size_mb']:6.1f}MB" if "size_mb" in row else ""
        print(
            f"  {name:40s} {row['warm_ms']:6.1f}ms {row['cold_ms']:6.1f}ms "
            f"{row['first_ms']:6.1f}ms {size:>8s}"
        )
    ours = rows["jalien-bin --version"]
    for key, limit in TARGETS.items():
        verdict = "ok" if ours[key] <= limit else "OVER TARGET"
        print(f"  {key:8s} {ours[key]:7.1f} (target <= {limit:g}) {verdict}")
    for name, row in rows.items():
        if name != "jalien-bin --version":
            print(
                f"  ratio {name} / jalien-bin: warm {row['warm_ms'] / ours['warm_ms']:.2f}x, "
                f"cold {row['cold_ms'] / ours['cold_ms']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
