"""The policy's tables: the generated docs/permissions.md is current, and the written rules
hold (a job token never submits, a limited proxy never gets a token, ...)."""

from __future__ import annotations

from pathlib import Path

from jalien.auth.policy import ALLOWED, Action, IdentityKind, kind_of, table_markdown
from jalien.roles.jcentral import command_actions

K, A = IdentityKind, Action
DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"


def test_docs_permissions_is_generated_from_the_tables():
    assert DOC.read_text() == table_markdown(command_actions().items()), (
        "docs/permissions.md is stale: run python build/gen_permissions.py"
    )


def test_written_rules():
    assert A.SUBMIT not in ALLOWED[K.JOB] | ALLOWED[K.JOBAGENT] | ALLOWED[K.LIMITED_PROXY]
    tokens = {A.TOKEN_USER, A.TOKEN_JOB, A.TOKEN_JOBAGENT, A.TOKEN_HOST}
    assert not tokens & ALLOWED[K.LIMITED_PROXY]
    assert not tokens & ALLOWED[K.JOB]
    assert ALLOWED[K.JOBAGENT] == {A.INFO, A.MATCH, A.JOB_STATE, A.TOKEN_JOB, A.FORWARD, A.REPORT}
    assert A.REPORT not in ALLOWED[K.USER] | ALLOWED[K.JOB]  # reports come from site levels
    assert A.ACT_FOR not in ALLOWED[K.ADMIN]  # only a service host acts for others


def test_kinds():
    assert kind_of(token="job", roles=("admin",)) is K.JOB
    assert kind_of(token="jobagent") is K.JOBAGENT
    assert kind_of(roles=("users", "admin"), limited=True) is K.LIMITED_PROXY
    assert kind_of(roles=("users", "admin"), proxy=True) is K.ADMIN
    assert kind_of(roles=("proxy",)) is K.HOST
    assert kind_of(roles=("users",), token="user") is K.JBOX
    assert kind_of(roles=("users",), proxy=True) is K.PROXY
    assert kind_of(roles=("users",)) is K.USER


def test_no_command_checks_rights_itself():
    """Commands declare their action; per-entry bits are the catalogue's, never a command's."""
    commands = Path(__file__).resolve().parents[2] / "jalien" / "commands"
    for source in commands.glob("*.py"):
        text = source.read_text()
        for needle in ("require(", "has_role(", " is_admin("):  # policy.is_admin is the one
            assert needle not in text, f"{source.name} calls {needle.strip()}...)"
