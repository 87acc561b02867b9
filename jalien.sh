#!/usr/bin/env bash
# Developer entry point: ./jalien.sh run | client | test | dev | lint | bench | build-binary | galera | multihost
# Sets up .venv (editable meson-python install) on first use, then does the job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
export PATH="$VENV/bin:$PATH"

# System packages (Debian names), checked with dpkg-query; installed through apt-get when this
# runs as root, else printed for the user to install. `run` needs only what builds the package:
# a C compiler and zlib's headers for the Cython extensions (meson finds zlib without
# pkg-config), venv for .venv. The tests need the rest: pkg-config and libmariadb-dev build the
# MariaDB driver (the `mariadb` extra), mariadb-server and openssl serve the catalogue and
# credential tests, patchelf..ccache the single binary (packaging/build_binary.sh), xrootd the
# XRootD SE tests and alien.py's cp, slurm + munge the VoBox's Slurm batch interface, zsh the
# zsh completion script.
RUN_PACKAGES=(gcc zlib1g-dev python3-venv)
# one line per purpose (add a line for a new one; say what needs it)
TEST_PACKAGES=("${RUN_PACKAGES[@]}")
TEST_PACKAGES+=(pkg-config libmariadb-dev mariadb-server openssl)  # catalogue, credentials
TEST_PACKAGES+=(patchelf binutils ccache)                          # the single binary
TEST_PACKAGES+=(xrootd-server xrootd-client python3-xrootd)        # XRootD SEs, alien.py cp
TEST_PACKAGES+=(slurm-wlm slurmctld slurmd munge)                  # the VoBox's Slurm
TEST_PACKAGES+=(nordugrid-arc-arex nordugrid-arc-client nordugrid-arc-plugins-needed nordugrid-arc-plugins-arcrest)  # an ARC CE
TEST_PACKAGES+=(zsh)                                               # zsh completion
TEST_PACKAGES+=(slapd ldap-utils)                                  # central configuration in LDAP
TEST_PACKAGES+=(chromium chromium-driver libnss3-tools)            # the monitoring page, headless
TEST_PACKAGES+=(galera-4 rsync)                                    # several jcentrals on Galera
TEST_PACKAGES+=(environment-modules)                               # packages: modulefiles loaded as alienv does

ensure_system() {  # ensure_system PACKAGE...
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "jalien.sh: needs Python >= 3.11 as $PY (set PYTHON=/path/to/python3.11 or newer)" >&2
    exit 1
  fi
  [[ "${JALIEN_SKIP_SYSTEM_CHECK:-}" == 1 ]] && return
  if ! command -v dpkg-query >/dev/null; then
    echo "==> not a Debian system: make sure the equivalents of these are installed: $*" >&2
    return
  fi
  local need=() pkg
  for pkg in "$@"; do
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] \
      || need+=("$pkg")
  done
  # the headers of the Python that builds the extensions (a Debian Python: python3-dev)
  "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
  ((${#need[@]})) || return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "==> apt-get install ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "jalien.sh $cmd: missing system packages; install them, then run this again:" >&2
    echo "  sudo apt-get install ${need[*]}" >&2
    echo "(JALIEN_SKIP_SYSTEM_CHECK=1 skips this check)" >&2
    exit 1
  fi
}

ensure_env() {  # ensure_env [EXTRA,...]: the venv with jalien and these extras installed
  local extras="${1:-}" stamp="$VENV/.jalien-installed" have extra fresh=1
  [[ -f "$stamp" && "$stamp" -nt pyproject.toml && "$stamp" -nt meson.build ]] || fresh=0
  "$VENV/bin/python" -c "import jalien" 2>/dev/null || fresh=0
  # the stamp lists the extras installed: asking for one it lacks installs again
  have=",$(cat "$stamp" 2>/dev/null || true),"
  for extra in ${extras//,/ }; do
    [[ "$have" == *",$extra,"* ]] || fresh=0
  done
  ((fresh)) && return
  echo "==> setting up $VENV (first run, pyproject.toml/meson.build changed, or extras [$extras])" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # build requirements first (setuptools for the sdists the install builds, e.g. mysqlclient,
  # whose license field needs >= 77): the editable install builds without isolation so that it
  # can rebuild the Cython extensions in place when a .pyx changes
  "$VENV/bin/python" -m pip install -q "meson-python>=0.16" "meson>=1.4" ninja "cython>=3.0" "setuptools>=77" >&2
  # an absolute cython path lets the editable loader rebuild without the venv on PATH
  CYTHON="$VENV/bin/cython" "$VENV/bin/python" -m pip install -q --no-build-isolation \
      -Cbuild-dir=.mesonpy-build -e ".${extras:+[$extras]}" >&2
  echo "$extras" >"$stamp"
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
    # Runtime dependencies only: no test tools, no MariaDB driver (the `mariadb` extra)
    ensure_system "${RUN_PACKAGES[@]}"
    ensure_env
    export JALIEN_STATE_DIR="${JALIEN_STATE_DIR:-$ROOT/run/home}"
    # setup never overwrites: the first run creates, later runs add what newer versions need
    jalien-bin setup --no-password --home "$JALIEN_STATE_DIR" \
      --globus-dir "${JALIEN_GLOBUS_DIR:-$JALIEN_STATE_DIR/globus}" \
      | grep -v '^kept existing' || true
    # the embedded SE (https://127.0.0.1:8099/se, files under run/home/se), so cp works
    export JALIEN_EMBEDDED_SE="${JALIEN_EMBEDDED_SE:-1}"
    # and over XRootD (root://127.0.0.1:8094//se), the URL it is registered with: alien.py's grid
    export JALIEN_SE_XROOTD_PORT="${JALIEN_SE_XROOTD_PORT:-8094}"
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
    ensure_system "${RUN_PACKAGES[@]}"
    ensure_env
    home="${JALIEN_STATE_DIR:-$ROOT/run/home}"
    globus="${JALIEN_GLOBUS_DIR:-$home/globus}"
    X509_USER_CERT="$globus/usercert.pem" X509_USER_KEY="$globus/userkey.pem" \
      X509_CERT_DIR="$home/certificates" JALIEN_STATE_DIR="$home" \
      exec jalien-bin "$@"
    ;;
  test)
    # everything the suite needs, from a bare machine on: system packages, the test and mariadb
    # extras, alien.py, and the machine's MariaDB (the catalogue tests; it needs root to start)
    ensure_system "${TEST_PACKAGES[@]}"
    ensure_env test,mariadb
    ensure_alienpy
    if [[ "$(id -u)" == 0 ]]; then
      build/ensure_mariadb.sh >&2
    else
      build/ensure_mariadb.sh >&2 || echo "==> no MariaDB at 127.0.0.1:3306: its tests skip" >&2
    fi
    export PYTHONUNBUFFERED=1
    exec "$ROOT/build/run_tests.sh" "$@"
    ;;
  dev)
    ensure_env test,mariadb
    echo "activate with: source $VENV/bin/activate"
    ;;
  lint)
    ensure_env test
    ruff check . && ruff format --check . && mypy
    ;;
  bench)
    ensure_env test,mariadb
    for b in bench/bench_*.py; do python "$b" "$@"; done
    ;;
  galera)
    # a 3-node MariaDB Galera cluster on loopback (docs/multihost.md):
    # ./jalien.sh galera start|stop [DIR] (default run/galera; ports in DIR/cluster.env)
    action="${1:-start}"
    dir="${2:-$ROOT/run/galera}"
    case "$action" in
      start) ensure_system mariadb-server galera-4 rsync; exec build/galera/start.sh "$dir" ;;
      stop) exec build/galera/stop.sh "$dir" ;;
      *) echo "usage: ./jalien.sh galera start|stop [DIR]" >&2; exit 2 ;;
    esac
    ;;
  multihost)
    # several jcentrals as hosts on a 3-node Galera cluster, a VoBox given all of them
    # (docs/multihost.md): ./jalien.sh multihost start|stop [DIR] [--centrals N]
    # (default run/multihost; DIR/client.env is how a client uses it)
    action="${1:-start}"
    dir="${2:-$ROOT/run/multihost}"
    shift $(( $# > 2 ? 2 : $# ))
    [[ "$action" == start ]] && ensure_system mariadb-server galera-4 rsync
    ensure_env mariadb
    exec python build/multihost.py "$action" "$dir" "$@"
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
