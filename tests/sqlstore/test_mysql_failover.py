"""A MariaDB DSN with failover servers (the other nodes of a Galera cluster): parsed from
``?failover=h:p,...``, and a connection goes to the next server when the first does not
answer, then starts at the one that answered."""

from __future__ import annotations

import pytest

from jalien.sqlstore import mysql
from tests.catalogue.mariadb_servers import mariadb_system  # noqa: F401 - the fixture
from tests.ports import free_port


def test_failover_servers_are_parsed():
    dsn = mysql.parse_dsn("mysql://u:p@db1:3307/q?failover=db2:3308,[::1]:3309")
    assert (dsn.host, dsn.port, dsn.database) == ("db1", 3307, "q")
    assert dsn.failover == (("db2", 3308), ("::1", 3309))
    assert dsn.address == "db1:3307"
    assert mysql.parse_dsn("mysql://u@db1/q").failover == ()
    with pytest.raises(ValueError, match="not host:port"):
        mysql.parse_dsn("mysql://u@db1/q?failover=db2")


def test_a_dead_server_fails_over_to_the_next(mariadb_system):  # noqa: F811
    server, _ = mariadb_system
    dead = free_port()  # a port nobody listens on
    dsn = mysql.parse_dsn(
        f"mysql://root:@127.0.0.1:{dead}/mysql?failover={server.host}:{server.port}"
    )
    for _ in range(2):  # the second starts at the server that answered
        conn = mysql.connect(dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        finally:
            conn.close()
    assert mysql._last_good[("127.0.0.1", dead)] == 1
    alone = mysql.parse_dsn(f"mysql://root:@127.0.0.1:{dead}/mysql")
    with pytest.raises(mysql.MySQLdb.OperationalError):
        mysql.connect(alone)
