"""The one authorization policy: who (an identity kind) may do what (an action).

Every request is checked here once, at the one place that serves it
(``commands.dispatch.Dispatcher`` for commands, ``net.server`` for channels a level opens):
a command declares its action when it is registered and never checks rights itself.
What stays elsewhere is data, not policy: the owner/group/other bits of a catalogue entry
(``catalogue.permissions``), whether a job belongs to the caller (``jobs.service``), and
whether a job token's job is still alive (``jobs.service.JobService.token_alive``).

Identity kinds (decided once, when a connection or channel is authenticated):

* ``user``: a registered user's own certificate; ``proxy``: a full RFC 3820 proxy of it;
  ``limited-proxy``: a Globus "limited" proxy; ``jbox``: a user token certificate (what the
  jBox and ``token`` hand out); ``admin``: any of these (but a limited proxy) of an account
  with the ``admin`` role.
* ``host``: a service host, a VoBox (an account with the ``proxy`` or ``vobox`` role, or a
  host token).
* ``jobagent``: a JobAgent token; ``job``: a job token.

Rules written down (docs/permissions.md is generated from the tables below):

* A job token acts as its job's user for that job's files and task (read, write, its own
  state); it may not submit jobs, control other jobs nor obtain tokens, and it works only
  while its job is active.
* A JobAgent token does site calls only: match jobs, report the state of the jobs it runs,
  ask for the job token of a job matched to it, forward its payload's job tokens.
* A limited proxy follows GSI's rule: it reads and writes data, but submits no job,
  controls no job and obtains no token.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Protocol


class IdentityKind(enum.Enum):
    USER = "user"
    ADMIN = "admin"
    PROXY = "proxy"
    LIMITED_PROXY = "limited-proxy"
    JBOX = "jbox"
    HOST = "host"
    JOBAGENT = "jobagent"
    JOB = "job"


class Action(enum.Enum):
    INFO = "info"  # the session itself: whoami, pwd, ping, version, commandlist
    READ = "read"  # catalogue and data reads, envelopes to read
    WRITE = "write"  # catalogue changes, envelopes to write, commits
    SUBMIT = "submit"  # new jobs
    JOB_READ = "job-read"  # the task queue: ps, jobinfo, top
    JOB_CONTROL = "job-control"  # kill, resubmit (the service checks ownership)
    MATCH = "match"  # site calls: waiting jobs, getMatchJob
    JOB_STATE = "job-state"  # setJobStatus, jobHeartbeat (a job token: its own job)
    TOKEN_USER = "token-user"
    TOKEN_JOB = "token-job"
    TOKEN_JOBAGENT = "token-jobagent"
    TOKEN_HOST = "token-host"
    CACHE = "cache"  # the raw cache commands of the shared cache
    FORWARD = "forward"  # open a channel for a certificate a lower level forwards
    ACT_FOR = "act-for"  # open a channel for another DN (a VoBox for its users)
    ADMIN = "admin"  # administration: SEs, cache statistics, CEs, quotas, resyncLDAP
    CONFIG_READ = "config-read"  # the grid's configuration: whois, groups, listCEs, quotas
    BECOME = "become"  # act as another account or role of one's own (``user``)
    BACKGROUND = "background"  # see and steer background loops and thread pools, optimizers
    SPY = "spy"  # spy on a running job and watch the grid (the services check ownership)
    REPORT = "report"  # a site level's monitoring reports and spy answers, sent upstream


K, A = IdentityKind, Action
_USER_ACTIONS = frozenset(
    {
        A.INFO,
        A.READ,
        A.WRITE,
        A.SUBMIT,
        A.JOB_READ,
        A.JOB_CONTROL,
        A.TOKEN_USER,
        A.CONFIG_READ,
        A.BECOME,
        A.SPY,
    }
)
ALLOWED: dict[IdentityKind, frozenset[Action]] = {
    K.USER: _USER_ACTIONS,
    K.PROXY: _USER_ACTIONS,
    K.JBOX: _USER_ACTIONS,
    K.LIMITED_PROXY: frozenset({A.INFO, A.READ, A.WRITE, A.JOB_READ, A.CONFIG_READ}),
    # everything but what only a service host does (a level acting for its clients)
    K.ADMIN: frozenset(Action) - {A.FORWARD, A.ACT_FOR},
    K.HOST: frozenset(
        {
            A.INFO,
            A.MATCH,
            A.JOB_STATE,
            A.JOB_READ,
            A.TOKEN_JOBAGENT,
            A.FORWARD,
            A.ACT_FOR,
            A.CONFIG_READ,
            A.REPORT,
        }
    ),
    K.JOBAGENT: frozenset({A.INFO, A.MATCH, A.JOB_STATE, A.TOKEN_JOB, A.FORWARD, A.REPORT}),
    K.JOB: frozenset({A.INFO, A.READ, A.WRITE, A.JOB_READ, A.JOB_STATE}),
}
# actions also granted by an account role, whatever the kind (a service's account)
BY_ROLE: dict[str, frozenset[Action]] = {"cache": frozenset({A.CACHE})}

WHY: dict[Action, str] = {
    A.INFO: "use this session",
    A.READ: "read data",
    A.WRITE: "write data",
    A.SUBMIT: "submit jobs",
    A.JOB_READ: "read the task queue",
    A.JOB_CONTROL: "control jobs",
    A.MATCH: "match jobs (site calls)",
    A.JOB_STATE: "change a job's state",
    A.TOKEN_USER: "obtain user tokens",
    A.TOKEN_JOB: "obtain job tokens",
    A.TOKEN_JOBAGENT: "obtain JobAgent tokens",
    A.TOKEN_HOST: "obtain host tokens",
    A.CACHE: "use the shared cache",
    A.FORWARD: "forward certificates",
    A.ACT_FOR: "act for other users",
    A.ADMIN: "administer this grid",
    A.CONFIG_READ: "read the grid's configuration",
    A.BECOME: "act as another account",
    A.BACKGROUND: "see or steer background work",
    A.SPY: "spy on jobs or watch the grid",
    A.REPORT: "report monitoring upstream",
}

HOST_ROLES = frozenset({"proxy", "vobox"})


class Caller(Protocol):
    @property
    def kind(self) -> IdentityKind | None: ...  # None: follows roles (net.identity.Identity)
    @property
    def roles(self) -> tuple[str, ...]: ...


def _kind(caller: Caller) -> IdentityKind:
    kind = caller.kind
    return kind if kind is not None else kind_of(roles=caller.roles)


def kind_of(
    *, roles: Iterable[str] = (), token: str = "", proxy: bool = False, limited: bool = False
) -> IdentityKind:
    """The kind of an authenticated credential: *token* is a token certificate's kind
    (``TokenKind.value``), *proxy*/*limited* say what an RFC 3820 proxy is."""
    if token == "job":
        return K.JOB
    if token == "jobagent":
        return K.JOBAGENT
    if token == "host":
        return K.HOST
    if limited:
        return K.LIMITED_PROXY
    roles = frozenset(roles)
    if "admin" in roles:
        return K.ADMIN
    if roles & HOST_ROLES:
        return K.HOST
    if token == "user":
        return K.JBOX
    return K.PROXY if proxy else K.USER


def kind_allows(kind: IdentityKind, action: Action) -> bool:
    """What the kind alone allows (no account role): the generated table, the table test."""
    return action in ALLOWED[kind]


def allows(caller: Caller, action: Action) -> bool:
    if action in ALLOWED[_kind(caller)]:
        return True
    return any(action in BY_ROLE.get(role, ()) for role in caller.roles)


def is_admin(caller: Caller) -> bool:
    """An administrator's identity (not a limited proxy of one, not a token of a job): what
    lifts a command's per-request limits (tokens for other users, longer lifetimes)."""
    return caller.kind is K.ADMIN


def may_forward(opener: Caller, forwarded: Caller) -> bool:
    """Whose certificate a level may forward (``Action.FORWARD``): a host (VoBox) anyone's;
    a JobAgent only its payloads' job tokens."""
    return _kind(opener) is K.HOST or _kind(forwarded) is K.JOB


def refusal(caller: Caller, action: Action, what: str = "") -> str:
    """The message of a refused request (the policy's one wording; tests look for it)."""
    where = f" ({what})" if what else ""
    return f"Permission denied: a {_kind(caller).value} identity may not {WHY[action]}{where}"


ActionOf = Action | Callable[[list[str]], Action]
"""What a command declares: one action, or a function of its arguments (``access read``
and ``access write``, ``token -t job``)."""


def resolve(action: ActionOf, args: list[str]) -> Action:
    return action if isinstance(action, Action) else action(args)


def possible(action: ActionOf) -> tuple[Action, ...]:
    """Every action a declaration can resolve to (for the generated table)."""
    if isinstance(action, Action):
        return (action,)
    return tuple(getattr(action, "actions", ()))


def table_markdown(commands: Iterable[tuple[str, ActionOf]]) -> str:
    """docs/permissions.md: command x identity kind, from the same tables."""
    kinds = list(IdentityKind)
    lines = [
        "# Permissions: command x identity kind",
        "",
        "Generated from `jalien/auth/policy.py` and jcentral's command table by",
        "`python build/gen_permissions.py`; `tests/auth/test_policy.py` checks it is current",
        "and `tests/integration/test_permissions.py` runs every command as every kind against a",
        "real jcentral. `yes` = allowed by the policy (the command may still refuse on data:",
        "file permissions, job ownership); `-` = refused with exit 13. The identity kinds and",
        "the written rules are in the docstring of `jalien/auth/policy.py`.",
        "",
        "| command | action | " + " | ".join(k.value for k in kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]

    for name, declared in sorted(commands, key=lambda c: c[0].lower()):
        actions = possible(declared)
        label = " / ".join(a.value for a in actions)
        cells = []
        for kind in kinds:
            marks = ["yes" if kind_allows(kind, a) else "-" for a in actions]
            cells.append(" / ".join(marks))
        lines.append(f"| `{name}` | {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Actions granted by an account role whatever the kind: "
        + ", ".join(f"`{r}`: {', '.join(a.value for a in acts)}" for r, acts in BY_ROLE.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


class ByFirstWord:
    """An action chosen by a command's first argument (``access read|write``)."""

    def __init__(self, default: Action, **words: Action) -> None:
        self.default = default
        self.words = words
        self.actions = (default, *dict.fromkeys(w for w in words.values() if w != default))

    def __call__(self, args: list[str]) -> Action:
        for arg in args:
            if not arg.startswith("-"):
                for prefix, action in self.words.items():
                    if arg.startswith(prefix):
                        return action
                return self.default
        return self.default
