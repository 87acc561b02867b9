"""Evaluating a JDL's Requirements against what a JobAgent offers.

    member(other.GridPartitions, "PDC08_2") && other.TTL > 3600 && other.CE == "ALICE::X::Y"

``other.X`` is an attribute of the agent (case-insensitive); a missing attribute makes a
comparison false, as ClassAds' UNDEFINED does. Compiled once per distinct text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from jalien.jobs.jdl import JdlError, _Tok, _tokens

Undefined = object()
Evaluator = Callable[[Mapping[str, Any]], Any]


class _Compiler:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            raise JdlError(
                f"expected {text!r} in Requirements, found {tok.text!r}", tok.line, tok.col
            )
        self.i += 1
        return tok

    def compile(self) -> Evaluator:
        fn = self.or_()
        tok = self.peek()
        if tok.kind != "eof" and tok.text != ";":
            raise JdlError(f"unexpected {tok.text!r} in Requirements", tok.line, tok.col)
        return fn

    def or_(self) -> Evaluator:
        left = self.and_()
        while self.peek().text == "||":
            self.take()
            right = self.and_()
            left = (lambda a, b: lambda env: _truth(a(env)) or _truth(b(env)))(left, right)
        return left

    def and_(self) -> Evaluator:
        left = self.not_()
        while self.peek().text == "&&":
            self.take()
            right = self.not_()
            left = (lambda a, b: lambda env: _truth(a(env)) and _truth(b(env)))(left, right)
        return left

    def not_(self) -> Evaluator:
        if self.peek().text == "!":
            self.take()
            inner = self.not_()
            return lambda env: not _truth(inner(env))
        return self.compare()

    def compare(self) -> Evaluator:
        left = self.primary()
        op = self.peek().text
        if op in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            right = self.primary()
            return lambda env: _compare(op, left(env), right(env))
        return left

    def primary(self) -> Evaluator:
        tok = self.take()
        if tok.text == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if tok.kind == "string":
            value = tok.text[1:-1]
            return lambda env: value
        if tok.kind == "number":
            number = float(tok.text) if "." in tok.text else int(tok.text)
            return lambda env: number
        if tok.text == "-" and self.peek().kind == "number":
            number = -float(self.take().text)
            return lambda env: number
        if tok.kind == "name":
            low = tok.text.lower()
            if low in ("true", "false"):
                return lambda env: low == "true"
            if self.peek().text == "(":
                return self.call(low, tok)
            attr = low.split(".", 1)[1] if low.startswith(("other.", "this.")) else low
            return lambda env: env.get(attr, Undefined)
        raise JdlError(f"unexpected {tok.text!r} in Requirements", tok.line, tok.col)

    def call(self, name: str, tok: _Tok) -> Evaluator:
        self.take("(")
        args: list[Evaluator] = []
        while self.peek().text != ")":
            args.append(self.or_())
            if self.peek().text == ",":
                self.take()
        self.take(")")
        if name in ("member", "stringlistmember") and len(args) == 2:
            a, b = args

            def member(env: Mapping[str, Any]) -> bool:
                x, y = a(env), b(env)
                if isinstance(x, list | tuple | set | frozenset):
                    return y in x
                if isinstance(y, list | tuple | set | frozenset):
                    return x in y
                if isinstance(y, str) and isinstance(x, str):
                    return x in y.split(",")
                return False

            return member
        raise JdlError(f"unknown function {name}() in Requirements", tok.line, tok.col)


def _truth(value: Any) -> bool:
    return value is not Undefined and bool(value)


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is Undefined or b is Undefined:
        return False
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.lower(), b.lower()  # ClassAds compare strings case-insensitively
    try:
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        return a >= b
    except TypeError:
        return False


@functools.lru_cache(maxsize=4096)
def compile_requirements(text: str) -> Evaluator:
    """A callable env -> bool for a Requirements text ('' is always true)."""
    if not text.strip():
        return lambda env: True
    fn = _Compiler(text).compile()
    return lambda env: _truth(fn(env))
