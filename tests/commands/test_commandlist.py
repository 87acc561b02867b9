"""commandlist answers per caller: the commands the policy lets the caller's identity kind
run, so the shell's `help` and completion do not offer users the site calls."""

from __future__ import annotations

from jalien.auth.policy import Action
from jalien.commands.basic import BasicCommands
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.net.identity import Identity


def _noop(session, args):
    return []


def _table() -> CommandTable:
    table = CommandTable()
    BasicCommands(table, motd="").register()
    table.add("ls", _noop, "list", action=Action.READ)
    table.add("submit", _noop, "submit", action=Action.SUBMIT)
    table.add("getMatchJob", _noop, "site call", action=Action.MATCH)
    table.add("setJobStatus", _noop, "site call", action=Action.JOB_STATE)
    table.add("addSE", _noop, "admin", action=Action.ADMIN)
    # an action chosen by the arguments: offered when one of them is allowed
    table.add("token", _noop, "tokens", action=_token_action)
    return table


def _token_action(args: list[str]) -> Action:
    return Action.TOKEN_JOB if "job" in args else Action.TOKEN_USER


_token_action.actions = (Action.TOKEN_USER, Action.TOKEN_JOB)  # what policy.possible reads


def _names(table: CommandTable, identity: Identity) -> set[str]:
    session = Session(identity=identity, cwd="/", site="", personality="jcentral")
    basic = BasicCommands(CommandTable(), motd="")
    basic.table = table
    return {r["commandlist"] for r in basic.commandlist(session, [])}


def test_a_user_is_not_offered_the_site_calls():
    table = _table()
    user = Identity(dn="/CN=jdoe", login="jdoe", roles=("users",))
    names = _names(table, user)
    assert {"ls", "submit", "token", "whoami", "commandlist"} <= names
    assert not names & {"getMatchJob", "setJobStatus", "addSE"}


def test_a_site_is_offered_its_calls_and_an_admin_everything():
    table = _table()
    host = Identity(dn="/CN=vobox", login="vobox", roles=("vobox",))
    assert {"getMatchJob", "setJobStatus", "whoami"} <= _names(table, host)
    assert "submit" not in _names(table, host)
    admin = Identity(dn="/CN=root", login="root", roles=("users", "admin"))
    assert _names(table, admin) == set(table.names())
