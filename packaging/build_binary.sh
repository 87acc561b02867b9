#!/usr/bin/env bash
# Build dist/jalien-bin, the single self-contained binary, with Nuitka.
#
#   packaging/build_binary.sh [--mode MODE]      (also: ./jalien.sh build-binary)
#
# From a clean clone: sets up .venv (./jalien.sh dev), installs Nuitka into it
# (build/requirements-binary.txt), builds the jalien wheel (meson-python, so the Cython
# extensions of jalien/_fast are compiled exactly as for an install), unpacks it into a
# stage and compiles the stage with the options of build/nuitka_options.py. Nothing from
# tests/ or bench/ is in the stage. The result is checked before it is put in place:
# `jalien-bin debug-info` must report the compiled (Cython) framing.
#
# MODE is one of the shapes measured in packaging/README.md. The default, "launcher", is a
# Nuitka standalone folder packed by build/pack_onefile.py behind build/launcher.c: one file
# that unpacks itself once per user and build. "standalone" leaves the folder,
# dist/jalien-bin.dist/, with dist/jalien-bin a link into it.
# Needs gcc, zlib headers, patchelf and binutils (strip); ccache makes rebuilds quick (.ci/run
# installs them). Work files go to dist/.nuitka/ (kept: the stage and the compilation report).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode=""
while (($#)); do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    --mode=*) mode="${1#--mode=}"; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_binary.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

missing=()
for tool in gcc patchelf strip; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "build_binary.sh: missing ${missing[*]} (Debian: apt-get install gcc patchelf binutils ccache)" >&2
  exit 1
fi
command -v ccache >/dev/null || echo "==> no ccache: every build compiles all C files again" >&2

start=$(date +%s)
./jalien.sh dev >/dev/null
PY="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH"
if ! "$PY" -m pip install -q --disable-pip-version-check -r build/requirements-binary.txt; then
  echo "build_binary.sh: could not install Nuitka into .venv" >&2
  exit 1
fi

work="$ROOT/dist/.nuitka"
stage="$work/stage"
rm -rf "$work/wheel" "$stage" "$work/out"
mkdir -p "$work/wheel" "$stage"

echo "==> building the jalien wheel (meson-python, Cython extensions compiled)"
"$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps \
  -Cbuild-dir="$work/meson" -w "$work/wheel" .
"$PY" - "$work/wheel" "$stage" <<'EOF'
import pathlib, sys, zipfile
wheel, = pathlib.Path(sys.argv[1]).glob("jalien-*.whl")
with zipfile.ZipFile(wheel) as zf:
    zf.extractall(sys.argv[2], [n for n in zf.namelist() if n.startswith("jalien/")])
EOF
cp build/jalien_bin.py "$stage/jalien_bin.py"
if ! compgen -G "$stage/jalien/_fast/framing_c*.so" >/dev/null; then
  echo "build_binary.sh: the wheel holds no compiled jalien/_fast/framing_c*.so" >&2
  exit 1
fi

read -r mode packing version < <("$PY" build/nuitka_options.py --stage "$stage" --describe \
  ${mode:+--mode "$mode"})
mapfile -t args < <("$PY" build/nuitka_options.py --stage "$stage" --output-dir "$work/out" \
  --mode "$mode")
echo "==> nuitka ${args[*]}"
# run from the stage: the package Nuitka compiles is the staged one (with its .so), never
# the editable install of the source tree
(cd "$stage" && "$PY" -m nuitka "${args[@]}")

# every library must be inside, but for the base system of any Linux (glibc, libstdc++, zlib)
outside="$(find "$work/out/jalien_bin.dist" -type f \( -name '*.so*' -o -name jalien-bin \) \
  -exec ldd {} + 2>/dev/null | awk '$2 == "=>" {print $3}' | grep -v "^$work/out/" \
  | xargs -r -n1 basename | sort -u \
  | grep -Ev '^(libc|libm|libpthread|libdl|librt|libutil|libgcc_s|libstdc\+\+|libz)\.so' \
  | grep -Ev '^ld-linux' || true)"
if [[ -n "$outside" ]]; then
  echo "build_binary.sh: libraries left outside the binary: $outside" >&2
  echo "  (bundle them: build/nuitka-package.config.yml)" >&2
  exit 1
fi

rm -rf dist/jalien-bin dist/jalien-bin.dist
if [[ "$packing" == packed ]]; then
  echo "==> packing the standalone folder behind build/launcher.c"
  gcc -O2 -std=c11 -Wall -Wextra -Werror -o "$work/launcher" build/launcher.c \
    -Wl,-Bstatic -lz -Wl,-Bdynamic
  strip -s "$work/launcher"
  "$PY" build/pack_onefile.py --launcher "$work/launcher" --dist "$work/out/jalien_bin.dist" \
    --version "$version" --output dist/jalien-bin
elif [[ -d "$work/out/jalien_bin.dist" && ! -f "$work/out/jalien-bin" ]]; then
  mv "$work/out/jalien_bin.dist" dist/jalien-bin.dist
  ln -s jalien-bin.dist/jalien-bin dist/jalien-bin
else
  mv "$work/out/jalien-bin" dist/jalien-bin
fi
mv "$work/out/jalien-bin.report.xml" "$work/"
rm -rf "$work/out"

echo "==> checking dist/jalien-bin"
info="$(env -i HOME="$work/home" dist/jalien-bin debug-info)"
echo "$info" | sed 's/^/    /'
if ! grep -q '^implementation: cython$' <<<"$info"; then
  echo "build_binary.sh: dist/jalien-bin does not run the compiled framing" >&2
  exit 1
fi
rm -rf "$work/home"
size=$(du -sh --apparent-size -L dist/jalien-bin | cut -f1)
echo "==> dist/jalien-bin ($size) built in $(($(date +%s) - start)) s"
