#!/usr/bin/env bash
# Developer entry point: ./jalien.sh run | client | test | dev | lint | bench | build-binary
# Sets up .venv (editable meson-python install) on first use, then does the job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
export PATH="$VENV/bin:$PATH"

ensure_env() {
  local stamp="$VENV/.jalien-installed"
  if [[ -f "$stamp" && "$stamp" -nt pyproject.toml && "$stamp" -nt meson.build ]] \
     && "$VENV/bin/python" -c "import jalien" 2>/dev/null; then
    return
  fi
  echo "==> setting up $VENV (first run, or pyproject.toml/meson.build changed)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # build requirements first (setuptools for the sdists the install builds, e.g. mysqlclient,
  # whose license field needs >= 77): the editable install builds without isolation so that it
  # can rebuild the Cython extensions in place when a .pyx changes
  "$VENV/bin/python" -m pip install -q "meson-python>=0.16" "meson>=1.4" ninja "cython>=3.0" "setuptools>=77" >&2
  # an absolute cython path lets the editable loader rebuild without the venv on PATH
  CYTHON="$VENV/bin/cython" "$VENV/bin/python" -m pip install -q --no-build-isolation \
      -Cbuild-dir=.mesonpy-build -e ".[test]" >&2
  touch "$stamp"
}

ensure_alienpy() {
  # the official JAliEn Python client, in a venv of its own, for the compatibility tests.
  # Its cp needs the XRootD bindings: the xrootd wheel pip installs with it, else Debian's
  # python3-xrootd, which serves the system Python (the venv is then made from that Python)
  local venv="$ROOT/.venv-alienpy" debian=/usr/lib/python3/dist-packages/XRootD
  if [[ -x "$venv/bin/alien.py" ]]; then
    "$venv/bin/python" -c "import XRootD.client" 2>/dev/null || [[ ! -d $debian ]] && return
  fi
  echo "==> installing alien.py 1.7.0 into $venv" >&2
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "alienpy==1.7.0" >&2 || true
  if ! "$venv/bin/python" -c "import XRootD.client" 2>/dev/null && [[ -d $debian ]]; then
    echo "==> alien.py: with Debian's python3-xrootd (/usr/bin/python3)" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/python" -m pip install -q "alienpy==1.7.0" >&2
  fi
  [[ -x "$venv/bin/alien.py" ]]
}

cmd="${1:-help}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  run)
    # The single-machine grid on embedded defaults: a dev identity (once), jcentral with its
    # embedded SE, and a VoBox that runs JobAgents on this host (fork). Ctrl-C stops both.
    ensure_env
    export JALIEN_STATE_DIR="${JALIEN_STATE_DIR:-$ROOT/run/home}"
    # setup never overwrites: the first run creates, later runs add what newer versions need
    jalien-bin setup --no-password --home "$JALIEN_STATE_DIR" \
      --globus-dir "${JALIEN_GLOBUS_DIR:-$JALIEN_STATE_DIR/globus}" \
      | grep -v '^kept existing' || true
    # the embedded SE (https://127.0.0.1:8099/se, files under run/home/se), so cp works
    export JALIEN_EMBEDDED_SE="${JALIEN_EMBEDDED_SE:-1}"
    jalien-bin --role jcentral --home "$JALIEN_STATE_DIR" "$@" &
    central=$!
    trap 'kill $central ${vobox:-} 2>/dev/null; wait' EXIT
    trap 'exit 130' INT TERM
    port="${JALIEN_BINARY_PORT:-8098}"
    for _ in $(seq 300); do  # jcentral is ready when its binary port answers (30 s at most)
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$central" 2>/dev/null || exit 1
      sleep 0.1
    done
    mkdir -p "$JALIEN_STATE_DIR/wn"
    JALIEN_SUBMIT_INTERVAL="${JALIEN_SUBMIT_INTERVAL:-5}" \
      JALIEN_WORKDIR="${JALIEN_WORKDIR:-$JALIEN_STATE_DIR/wn}" \
      jalien-bin --role vobox --home "$JALIEN_STATE_DIR" --central "127.0.0.1:$port" &
    vobox=$!
    wait -n "$central" "$vobox"
    ;;
  client)
    # jalien-bin as the run grid's user: ./jalien.sh client submit file:docs/examples/hello.jdl
    ensure_env
    home="${JALIEN_STATE_DIR:-$ROOT/run/home}"
    globus="${JALIEN_GLOBUS_DIR:-$home/globus}"
    X509_USER_CERT="$globus/usercert.pem" X509_USER_KEY="$globus/userkey.pem" \
      X509_CERT_DIR="$home/certificates" JALIEN_STATE_DIR="$home" \
      exec jalien-bin "$@"
    ;;
  test)
    ensure_env
    ensure_alienpy
    exec "$ROOT/build/run_tests.sh" "$@"
    ;;
  dev)
    ensure_env
    echo "activate with: source $VENV/bin/activate"
    ;;
  lint)
    ensure_env
    ruff check . && ruff format --check . && mypy
    ;;
  bench)
    ensure_env
    for b in bench/bench_*.py; do python "$b" "$@"; done
    ;;
  build-binary)
    # dist/jalien-bin with Nuitka (see packaging/README.md)
    exec "$ROOT/packaging/build_binary.sh" "$@"
    ;;
  *)
    sed -n '2,3p' "$0" | sed 's/^# //'
    [[ "$cmd" == help ]] || exit 2
    ;;
esac
