#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback for tests and benches (docs/multihost.md):
#   build/galera/start.sh DIR [N]     start the cluster in DIR (made on first use), or node N alone
#   build/galera/stop.sh DIR [N]      stop it (every node, last node 1), or node N alone
# Each node has its own data directory DIR/nodeN/data, config DIR/nodeN/my.cnf, socket, log,
# and four free loopback ports: mysqld (client), Galera replication (gmcast), IST and SST. The
# ports are chosen once and kept in DIR/cluster.env (shell-sourceable: NODES, PORT_n,
# GALERA_n, IST_n, SST_n, SOCKET_n, ADDRESSES = the client endpoints host:port,...). Root logs in over
# TCP with an empty password. The machine's own MariaDB (3306) is not touched.
#
# Node 1's data directory is made by mariadb-install-db; nodes 2 and 3 start empty and get
# theirs from a donor by rsync SST (a few seconds for a fresh server on loopback); a node that
# restarts later catches up by IST from the others' gcache. Node 1 bootstraps the
# cluster (--wsrep-new-cluster); every wait is bounded and on an event (wsrep status).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:?usage: start.sh DIR [NODE]}"
ONLY="${2:-}"
NODES=3
TIMEOUT="${GALERA_START_TIMEOUT:-90}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

bin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo /usr/sbin/$1; } || true; }
MARIADBD="$(bin mariadbd)"
INSTALL_DB="$(bin mariadb-install-db)"
PROVIDER="${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}"
[[ -n "$MARIADBD" && -n "$INSTALL_DB" ]] || { echo "galera: mariadbd is missing (apt-get install mariadb-server)" >&2; exit 2; }
[[ -f "$PROVIDER" ]] || { echo "galera: $PROVIDER is missing (apt-get install galera-4)" >&2; exit 2; }

if [[ ! -f "$DIR/cluster.env" ]]; then
  # 3 x 4 distinct free loopback ports below the ephemeral range (tests/ports.py): a port the
  # kernel hands out for bind(0) may become an outgoing connection's source port (a state
  # transfer's) before the node binds it, and the node aborts (EADDRINUSE)
  read -r -a P < <(python3 "$HERE/../../tests/ports.py" 12)
  {
    echo "NODES=$NODES"
    addresses=()
    for n in 1 2 3; do
      i=$(( (n - 1) * 4 ))
      echo "PORT_$n=${P[$i]}"
      echo "GALERA_$n=${P[$((i + 1))]}"
      echo "IST_$n=${P[$((i + 2))]}"
      echo "SST_$n=${P[$((i + 3))]}"
      echo "SOCKET_$n=$DIR/node$n/mysqld.sock"
      addresses+=("127.0.0.1:${P[$i]}")
    done
    echo "ADDRESSES=$(IFS=,; echo "${addresses[*]}")"
  } > "$DIR/cluster.env.tmp"
  mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
fi
# shellcheck disable=SC1091
source "$DIR/cluster.env"
GCOMM="gcomm://127.0.0.1:$GALERA_1,127.0.0.1:$GALERA_2,127.0.0.1:$GALERA_3"

write_cnf() {  # write_cnf N
  local n=$1 port galera ist sst
  port=$(eval echo "\$PORT_$n"); galera=$(eval echo "\$GALERA_$n"); ist=$(eval echo "\$IST_$n")
  sst=$(eval echo "\$SST_$n")
  cat > "$DIR/node$n/my.cnf" <<CNF
[mariadbd]
datadir=$DIR/node$n/data
socket=$DIR/node$n/mysqld.sock
pid-file=$DIR/node$n/mysqld.pid
log-error=$DIR/node$n/mysqld.log
port=$port
bind-address=127.0.0.1
user=root
skip-name-resolve
skip-log-bin
performance_schema=OFF
innodb_buffer_pool_size=128M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
innodb_autoinc_lock_mode=2
default_storage_engine=InnoDB
binlog_format=ROW
max_connections=500
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=jalien_test
wsrep_cluster_address=$GCOMM
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$galera
wsrep_sst_receive_address=127.0.0.1:$sst
wsrep_sst_method=rsync
wsrep_slave_threads=2
wsrep_provider_options="base_host=127.0.0.1;base_port=$galera;gmcast.listen_addr=tcp://127.0.0.1:$galera;ist.recv_addr=127.0.0.1:$ist;gcache.size=32M;gcs.fc_limit=256;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT6S"
CNF
}

sql() {  # sql N STATEMENT: through node N's socket
  local socket; socket=$(eval echo "\$SOCKET_$1")
  mariadb --no-defaults -uroot -S "$socket" --connect-timeout=2 -N -B -e "$2" 2>/dev/null
}

status() { sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" | awk '{print $2}'; }

running() {  # running N: its process is alive
  local pidfile="$DIR/node$1/mysqld.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

launch() {  # launch N [--wsrep-new-cluster]
  local n=$1; shift
  write_cnf "$n"
  : > "$DIR/node$n/mysqld.log"
  # the SST script's rsync daemon, started by root, runs as nobody: the data directory is
  # nobody's so that it may write and set permissions there, e.g. a rejoin after kill -9
  # (root's mariadbd reads it all the same; a disposable test cluster on loopback)
  chown -R nobody:nogroup "$DIR/node$n/data" 2>/dev/null || true
  chmod -R a+rwX "$DIR/node$n/data"
  # own session: the node outlives this script; stop.sh ends it by its pid file
  setsid "$MARIADBD" --defaults-file="$DIR/node$n/my.cnf" "$@" </dev/null >/dev/null 2>&1 &
  echo $! > "$DIR/node$n/launcher.pid"
}

wait_for() {  # wait_for N WHAT: bounded wait until node N is synced (and the cluster has 3)
  local n=$1 deadline=$((SECONDS + TIMEOUT)) pid
  pid=$(cat "$DIR/node$n/launcher.pid")
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "galera: node $n exited; its log:" >&2; tail -30 "$DIR/node$n/mysqld.log" >&2; return 1
    fi
    if [[ "$(status "$n" wsrep_local_state_comment)" == Synced && "$(status "$n" wsrep_ready)" == ON ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "galera: node $n not synced within $TIMEOUT s; its log:" >&2
  tail -30 "$DIR/node$n/mysqld.log" >&2
  return 1
}

grastate() {  # grastate N UUID SEQNO SAFE
  printf '# GALERA saved state\nversion: 2.1\nuuid:    %s\nseqno:   %s\nsafe_to_bootstrap: %s\n' \
    "$2" "$3" "$4" > "$DIR/node$1/data/grastate.dat"
}

if [[ ! -d "$DIR/node1/data/mysql" ]]; then
  rm -rf "$DIR"/node{1,2,3}
  mkdir -p "$DIR"/node{1,2,3}/data
  # root@localhost and root@127.0.0.1 with an empty password (normal authentication)
  "$INSTALL_DB" --no-defaults --datadir="$DIR/node1/data" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$DIR/install.log" 2>&1 \
    || { echo "galera: mariadb-install-db failed:" >&2; tail -20 "$DIR/install.log" >&2; exit 1; }
fi

if [[ -n "$ONLY" ]]; then  # one node (re)joins the running cluster
  running "$ONLY" && { echo "galera: node $ONLY is running"; exit 0; }
  launch "$ONLY"
  wait_for "$ONLY"
  echo "galera: node $ONLY joined ($(status "$ONLY" wsrep_cluster_size) nodes)"
  exit 0
fi

# bootstrap from node 1 unless some node runs already (then the others join it)
any=0
for n in 1 2 3; do running "$n" && any=1; done
if (( ! any )); then
  # stop.sh stops node 1 last, which makes it safe to bootstrap from; after a crash of all
  # nodes, node 1 is bootstrapped anyway (a test cluster: its data is disposable)
  sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$DIR/node1/data/grastate.dat" 2>/dev/null || true
  launch 1 --wsrep-new-cluster
  wait_for 1
fi
for n in 1 2 3; do  # one joiner at a time: a donor serves one state transfer
  running "$n" && continue
  launch "$n"
  wait_for "$n"
done
deadline=$((SECONDS + TIMEOUT))
until [[ "$(status 1 wsrep_cluster_size)" == "$NODES" ]]; do
  (( SECONDS < deadline )) || { echo "galera: cluster size $(status 1 wsrep_cluster_size), not $NODES" >&2; exit 1; }
  sleep 0.1
done
echo "galera: $NODES nodes synced at $ADDRESSES (DIR/cluster.env)"
