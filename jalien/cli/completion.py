"""Shell completion for ``jalien-bin`` itself: ``jalien-bin completion bash|zsh`` prints the
script (packaging/completion/ holds the same, made by it), which completes the subcommands,
the roles, each subcommand's options (read from its argparse parser, so they never drift) and
grid paths. Grid paths and grid command names come from the hidden ``jalien-bin __complete``:
``__complete PREFIX`` asks ``ls -F`` of PREFIX's directory through the running jBox or
central (as the shell connects: net.discovery) with a short timeout and prints the names, a
directory with its ``/``; ``__complete --commands`` prints the server's ``commandlist`` (what
this identity may run). Neither ever prompts (a password-protected key: nothing) nor fails
loudly: completion must not get in the way."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Mapping, Sequence

from jalien.wire.errors import EXIT_USAGE

COMPLETE_TIMEOUT = 3.0  # seconds for the connection and for the answer

# name -> one line: what `jalien-bin --help` lists (as git and kubectl do)
SUBCOMMANDS: dict[str, str] = {
    "shell": "interactive grid shell: history, completion, Ctrl-C cancels the command",
    "setup": "create a development CA, host and user credentials (never overwrites)",
    "proxy": "RFC 3820 proxies of the user certificate: init, info, renew, destroy",
    "cp": "copy files between the grid and this machine (file:/path is local)",
    "completion": "print the bash or zsh completion script of jalien-bin",
}
ROLE_HELP: dict[str, str] = {
    "jcentral": "central services: catalogue, task queue, tokens, the JSON and binary ports",
    "vobox": "a site's computing element: submits JobAgents to its batch system",
    "jobagent": "on a worker node: matches jobs for its slot and runs them",
    "jbox": "the desktop agent: one token and local ports for alien.py and jalien-bin",
    "se": "a storage element of its own (HTTPS)",
}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    names: list[str] = []
    for action in parser._actions:
        names += [s for s in action.option_strings if s not in names]
    return names


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_table() -> dict[str, list[str]]:
    """Each subcommand's options, from the parsers the subcommands use."""
    from jalien.cli import cp_cmd, main, proxy_cmd

    proxy = _subparsers(proxy_cmd._parser())
    proxy_options: list[str] = ["-h", "--help"]
    for sub in proxy.values():
        proxy_options += [o for o in _options(sub) if o not in proxy_options]
    return {
        "role": _options(main._role_parser()),
        "setup": _options(main._setup_parser()),
        "cp": _options(cp_cmd._parser()),
        "proxy": proxy_options,
        "proxy-actions": sorted(proxy),
        "shell": ["--password-stdin", "-h", "--help"],
        "completion": ["bash", "zsh"],
        "top": ["--role", "--version", "--help", "-json"],
    }


def _words(items: Sequence[str]) -> str:
    return " ".join(items)


def bash_script() -> str:
    from jalien.cli.main import ROLES

    t = option_table()
    return f"""# bash completion for jalien-bin (made by `jalien-bin completion bash`)
# install: jalien-bin completion bash > ~/.local/share/bash-completion/completions/jalien-bin
# or: source <(jalien-bin completion bash)
_jalien_bin_grid() {{  # grid paths (or command names) from the running jBox or central
    local IFS=$'\\n' names
    names=($(command "${{COMP_WORDS[0]}}" __complete "$@" 2>/dev/null))
    COMPREPLY+=($(compgen -W "${{names[*]}}" -- "$cur"))
    local w
    for w in "${{COMPREPLY[@]}}"; do
        [[ $w == */ ]] && compopt -o nospace 2>/dev/null && break
    done
}}

_jalien_bin() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local sub="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --role|--role=*) sub=role; break ;;
            -*) ;;
            *) [[ -z $sub ]] && sub="${{COMP_WORDS[i]}}" ;;
        esac
    done
    if [[ $prev == --role ]]; then
        COMPREPLY=($(compgen -W "{_words(ROLES)}" -- "$cur"))
        return
    fi
    case "$sub" in
        "")
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "{_words(t["top"])}" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "{_words(list(SUBCOMMANDS))}" -- "$cur"))
                _jalien_bin_grid --commands
            fi ;;
        role) COMPREPLY=($(compgen -W "{_words(t["role"])}" -- "$cur")) ;;
        setup) COMPREPLY=($(compgen -W "{_words(t["setup"])}" -- "$cur")) ;;
        shell) COMPREPLY=($(compgen -W "{_words(t["shell"])}" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "{_words(t["completion"])}" -- "$cur")) ;;
        proxy)
            if [[ $prev == proxy ]]; then
                COMPREPLY=($(compgen -W "{_words(t["proxy-actions"])}" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "{_words(t["proxy"])}" -- "$cur"))
            fi ;;
        cp)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "{_words(t["cp"])}" -- "$cur"))
            else
                _jalien_bin_grid -- "$cur"
            fi ;;
        *)  # a grid command: its arguments are grid paths
            [[ $cur == -* ]] || _jalien_bin_grid -- "$cur" ;;
    esac
}}
complete -F _jalien_bin jalien-bin
"""


def _zsh_describe(table: Mapping[str, str]) -> str:
    return " ".join(f"'{name}:{text.replace(chr(39), '')}'" for name, text in table.items())


def zsh_script() -> str:
    t = option_table()
    return f"""#compdef jalien-bin
# zsh completion for jalien-bin (made by `jalien-bin completion zsh`)
# install: jalien-bin completion zsh > "${{fpath[1]}}/_jalien-bin"
# or: source <(jalien-bin completion zsh)
_jalien_bin_grid() {{  # grid paths (or command names) from the running jBox or central
    local -a names dirs files
    names=(${{(f)"$(command ${{words[1]}} __complete "$@" 2>/dev/null)"}})
    dirs=(${{(M)names:#*/}})
    files=(${{names:#*/}})
    (( $#dirs )) && compadd -S '' -- $dirs
    (( $#files )) && compadd -- $files
}}

_jalien_bin() {{
    local -a subcommands roles
    subcommands=({_zsh_describe(SUBCOMMANDS)})
    roles=({_zsh_describe(ROLE_HELP)})
    local cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}} sub="" w
    for w in ${{words[2,CURRENT-1]}}; do
        case $w in
            --role|--role=*) sub=role; break ;;
            -*) ;;
            *) [[ -z $sub ]] && sub=$w ;;
        esac
    done
    if [[ $prev == --role ]]; then
        _describe 'role' roles
        return
    fi
    case $sub in
        "")
            if [[ $cur == -* ]]; then
                compadd -- {_words(t["top"])}
            else
                _describe 'command' subcommands
                _jalien_bin_grid --commands
            fi ;;
        role) compadd -- {_words(t["role"])} ;;
        setup) compadd -- {_words(t["setup"])} ;;
        shell) compadd -- {_words(t["shell"])} ;;
        completion) compadd -- {_words(t["completion"])} ;;
        proxy)
            if [[ $prev == proxy ]]; then
                compadd -- {_words(t["proxy-actions"])}
            else
                compadd -- {_words(t["proxy"])}
            fi ;;
        cp)
            if [[ $cur == -* ]]; then
                compadd -- {_words(t["cp"])}
            else
                _jalien_bin_grid -- "$cur"
            fi ;;
        *) [[ $cur == -* ]] || _jalien_bin_grid -- "$cur" ;;
    esac
}}
# a script sourced (source <(...)) registers itself; from $fpath, compinit does
(( $+functions[compdef] )) && compdef _jalien_bin jalien-bin
"""


SCRIPTS = {"bash": bash_script, "zsh": zsh_script}


def completion_command(argv: Sequence[str]) -> int:
    """``jalien-bin completion bash|zsh``: the completion script on stdout."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: jalien-bin completion bash|zsh")
        print("  prints the completion script of jalien-bin for that shell, e.g.")
        print("  source <(jalien-bin completion bash)")
        return 0 if args else EXIT_USAGE
    if len(args) != 1 or args[0] not in SCRIPTS:
        print(f"jalien-bin completion: {' '.join(args)}: bash or zsh", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(SCRIPTS[args[0]]())
    return 0


def grid_names(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """What ``__complete`` prints: grid paths under the prefix, or ``--commands``."""
    from jalien.cli.shell import Connection, ShellError
    from jalien.config import ConfigError, load_settings
    from jalien.net import discovery
    from jalien.wire.errors import RequestError
    from jalien.wire.jalien_json import OutputMode, records

    args = list(argv)
    commands = "--commands" in args
    words = [a for a in args if a not in ("--", "--commands")]
    prefix = words[0] if words else ""
    env = os.environ if env is None else env
    try:
        first = next(iter(discovery.credentials_in_order(env)), None)
        if first is None or first.needs_password():
            return []  # completion never asks for a password
        connection = Connection(load_settings(), env, connect_timeout=COMPLETE_TIMEOUT)
    except (ConfigError, ShellError, Exception):  # no credentials, a bad config: nothing
        return []
    try:
        if commands:
            reply = connection.call("commandlist", [], timeout=COMPLETE_TIMEOUT)
            return sorted({str(r.get("commandlist", "")) for r in reply.results} - {""})
        where = prefix.rpartition("/")[0] + "/" if "/" in prefix else ""
        reply = connection.call("ls", ["-F", where] if where else ["-F"], timeout=COMPLETE_TIMEOUT)
        if reply.exitcode:
            return []
        names = []
        for record in records(reply, OutputMode.ALL):
            name = str(record.get("name") or record.get("message", "")).strip()
            base = name.rstrip("/").rsplit("/", 1)[-1]
            if base:
                names.append(where + base + ("/" if name.endswith("/") else ""))
        return [n for n in names if n.startswith(prefix)]
    except (RequestError, ShellError, KeyboardInterrupt, Exception):  # never in the way
        return []
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def complete_command(argv: Sequence[str]) -> int:
    """``jalien-bin __complete [--commands] [--] PREFIX`` (hidden): one name a line."""
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet):
        names = grid_names(argv)
    for name in names:
        print(name)
    return 0
