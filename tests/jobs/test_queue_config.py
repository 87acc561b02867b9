"""jcentral's choice of task queue: taskqueue_backend and [taskqueue_mariadb]."""

from __future__ import annotations

import pytest

from jalien.config import ConfigError, load_settings
from jalien.jobs.store import TaskQueueStore
from jalien.roles.jcentral import task_queue


def settings(tmp_path, text: str):
    path = tmp_path / "jalien.toml"
    path.write_text(f'home = "{tmp_path}"\n' + text)
    return load_settings(path, env={})


def test_sqlite_is_the_default(tmp_path):
    assert isinstance(task_queue(settings(tmp_path, "")), TaskQueueStore)


def test_mariadb_from_its_table(tmp_path):
    pytest.importorskip("MySQLdb")
    from jalien.jobs.mariadb_store import MariaDBTaskQueue

    queue = task_queue(
        settings(
            tmp_path,
            'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\n'
            'dsn = "mysql://alien:secret@db.example:3307/alice_queue"\nreaders = 3\n',
        )
    )
    assert isinstance(queue, MariaDBTaskQueue)
    assert queue._db.dsn.address == "db.example:3307" and queue._db.readers == 3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('taskqueue_backend = "postgres"\n', "taskqueue_backend must be sqlite or mariadb, not"),
        ('taskqueue_backend = "mariadb"\n', r"\[taskqueue_mariadb\]: Object missing .*dsn"),
        (
            'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\ndsn = "postgres://h/db"\n',
            r"\[taskqueue_mariadb\]: not a mysql:// or mariadb:// DSN",
        ),
        (
            'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\ndsn = "mysql://h:3306/"\n',
            r"\[taskqueue_mariadb\]: the DSN names no database",
        ),
        (
            'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\ndsn = "mysql://h/q"\nreader = 2\n',
            r"\[taskqueue_mariadb\]: Object contains unknown field `reader`",
        ),
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path, text, error):
    pytest.importorskip("MySQLdb")
    with pytest.raises(ConfigError, match=error):
        task_queue(settings(tmp_path, text))
