#!/usr/bin/env bash
# Make sure the machine's MariaDB answers at 127.0.0.1:3306 as root with an empty password,
# as the catalogue tests and benches expect (tests/catalogue/mariadb_servers.py starts a
# second server of its own). Starts the server when it is not running; bounded waits.
set -euo pipefail

tcp_ok() { mariadb --protocol=tcp -h127.0.0.1 -P3306 -uroot --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1; }

if tcp_ok; then
  echo "MariaDB answers at 127.0.0.1:3306"
  exit 0
fi
if [[ ! -x /usr/sbin/mariadbd ]]; then
  echo "ensure_mariadb: /usr/sbin/mariadbd is missing (apt-get install mariadb-server)" >&2
  exit 1
fi
echo "==> starting MariaDB"
install -d -o mysql -g mysql /run/mysqld 2>/dev/null || mkdir -p /run/mysqld
# the pid file tells the system server from a test server started by the suite
start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid \
  --exec /usr/sbin/mariadbd
for _ in $(seq 1 60); do
  tcp_ok && { echo "MariaDB answers at 127.0.0.1:3306"; exit 0; }
  # a fresh Debian install lets root in by unix socket only: allow the empty password
  if mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    echo "==> letting root log in over TCP with an empty password (test machine)"
    mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password \
      USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
  fi
  sleep 1
done
echo "ensure_mariadb: MariaDB did not answer at 127.0.0.1:3306 within 60 s" >&2
exit 1
