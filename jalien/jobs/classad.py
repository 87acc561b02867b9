"""The ClassAd-like language of JDLs: tokens, literals and the one error type.

Whatever the text, reading it gives tokens or raises JdlError with the line and column;
jdl.py (documents) and requirements.py (expressions) build on these.
"""

from __future__ import annotations

import math
import re

import msgspec

MAX_NESTING = 64
"""Deepest nesting of lists and parentheses a JDL may use (real ones use 2 or 3)."""

MAX_EXPRESSION = 16 * 1024
"""Longest Requirements text, in characters: each distinct text stays compiled in the
broker, so it is bounded (real ones are a few hundred characters)."""

MAX_NUMBER = 2**63 - 1  # what the task queue's integer columns hold

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*|//[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[=;{},()<>!+\-*/])
    """,
    re.VERBOSE,
)


class JdlError(ValueError):
    """A JDL that cannot be read; the message starts with 'line L, column C:'."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


class Tok(msgspec.Struct, frozen=True):
    kind: str
    text: str
    line: int
    col: int


def position(text: str, index: int) -> tuple[int, int]:
    """The line and column (from 1) of *text*[*index*]."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def tokens(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos, line, line_start = 0, 1, 0
    match = _TOKEN.match
    while pos < len(text):
        m = match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == '"':
                end = text.find("\n", pos)
                rest = text[pos : len(text) if end < 0 else end]
                hint = (
                    " (a backslash takes the next character: \\\\ is one)" if "\\" in rest else ""
                )
                raise JdlError("unterminated string" + hint, line, pos - line_start + 1)
            raise JdlError(f"unexpected character {ch!r}", line, pos - line_start + 1)
        kind = m.lastgroup or ""
        if kind == "nl":
            line += 1
            line_start = m.end()
        elif kind not in ("ws", "comment"):
            out.append(Tok(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    out.append(Tok("eof", "", line, pos - line_start + 1))
    return out


def number(tok: Tok) -> int | float:
    """A number token's value: an int without '.' or an exponent (25e3 is a float)."""
    text = tok.text
    if text.isdigit():
        if len(text) > 19 or int(text) > MAX_NUMBER:
            raise JdlError(f"number {_cut(text)} is too large", tok.line, tok.col)
        return int(text)
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise JdlError(f"number {_cut(text)} is too large", tok.line, tok.col)
    return value


def unquote(text: str) -> str:
    """A string token's value: the quotes dropped, a backslash takes the next character."""
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _cut(text: str, size: int = 24) -> str:
    return text if len(text) <= size else text[:size] + "..."
