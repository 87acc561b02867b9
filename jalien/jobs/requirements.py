"""Evaluating a JDL's Requirements against what a JobAgent offers.

    member(other.GridPartitions, "PDC08_2") && other.TTL > 3600 && other.CE == "ALICE::X::Y"

``other.X`` is an attribute of the agent (case-insensitive); a missing attribute makes a
comparison false, as ClassAds' UNDEFINED does. Compiled once per distinct text. Whatever
the text, compiling gives an evaluator or raises JdlError (line and column); parentheses
nest at most MAX_NESTING deep and ``&&``/``||`` chains are flat, so an evaluator never
recurses deeper than that, and it never raises, whatever the agent's attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Mapping
from typing import Any

from jalien.jobs.classad import MAX_EXPRESSION, MAX_NESTING, JdlError, Tok, number, tokens, unquote

Undefined = object()
Evaluator = Callable[[Mapping[str, Any]], Any]

_COMPARISONS = ("==", "!=", "<", ">", "<=", ">=")


class _Compiler:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.depth = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            raise JdlError(f"expected {text!r} in Requirements, found {_shown(tok)}", *_at(tok))
        if tok.kind != "eof":
            self.i += 1
        return tok

    def compile(self) -> Evaluator:
        fn = self.or_()
        if self.peek().text == ";":
            self.take()
        tok = self.peek()
        if tok.kind != "eof":
            raise JdlError(f"unexpected {_shown(tok)} in Requirements", *_at(tok))
        return fn

    def or_(self) -> Evaluator:
        terms = [self.and_()]
        while self.peek().text == "||":
            self.take()
            terms.append(self.and_())
        if len(terms) == 1:
            return terms[0]
        if len(terms) == 2:
            a, b = terms
            return lambda env: _truth(a(env)) or _truth(b(env))
        return lambda env: any(_truth(f(env)) for f in terms)

    def and_(self) -> Evaluator:
        terms = [self.not_()]
        while self.peek().text == "&&":
            self.take()
            terms.append(self.not_())
        if len(terms) == 1:
            return terms[0]
        if len(terms) == 2:
            a, b = terms
            return lambda env: _truth(a(env)) and _truth(b(env))
        return lambda env: all(_truth(f(env)) for f in terms)

    def not_(self) -> Evaluator:
        count = 0
        while self.peek().text == "!":
            self.take()
            count += 1
        inner = self.compare()
        if not count:
            return inner
        if count % 2:
            return lambda env: not _truth(inner(env))
        return lambda env: _truth(inner(env))

    def compare(self) -> Evaluator:
        left = self.primary()
        op = self.peek().text
        if op in _COMPARISONS:
            self.take()
            right = self.primary()
            return lambda env: _compare(op, left(env), right(env))
        return left

    def primary(self) -> Evaluator:
        tok = self.take()
        if tok.text == "(":
            self.enter(tok)
            inner = self.or_()
            self.take(")")
            self.depth -= 1
            return inner
        if tok.kind == "string":
            text = unquote(tok.text)
            return lambda env: text
        if tok.kind == "number":
            value = number(tok)
            return lambda env: value
        if tok.text == "-" and self.peek().kind == "number":
            negative = -number(self.take())
            return lambda env: negative
        if tok.kind == "name":
            low = tok.text.lower()
            if low in ("true", "false"):
                truth = low == "true"
                return lambda env: truth
            if self.peek().text == "(":
                return self.call(low, tok)
            attr = low.split(".", 1)[1] if low.startswith(("other.", "this.")) else low
            return lambda env: env.get(attr, Undefined)
        raise JdlError(f"unexpected {_shown(tok)} in Requirements", *_at(tok))

    def enter(self, tok: Tok) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise JdlError(
                f"Requirements nested deeper than {MAX_NESTING} levels", tok.line, tok.col
            )

    def call(self, name: str, tok: Tok) -> Evaluator:
        self.enter(self.take("("))
        args: list[Evaluator] = []
        while self.peek().text != ")":
            args.append(self.or_())
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != ")":
                raise JdlError(
                    f"expected ',' or ')', found {_shown(self.peek())}", *_at(self.peek())
                )
        self.take(")")
        self.depth -= 1
        if name in ("member", "stringlistmember") and len(args) == 2:
            a, b = args
            return lambda env: _member(a(env), b(env))
        raise JdlError(f"unknown function {name}() in Requirements", tok.line, tok.col)


def _at(tok: Tok) -> tuple[int, int]:
    return tok.line, tok.col


def _shown(tok: Tok) -> str:
    return "end of input" if tok.kind == "eof" else repr(tok.text[:40])


def _truth(value: Any) -> bool:
    return value is not Undefined and bool(value)


def _member(x: Any, y: Any) -> bool:
    try:
        # lists and sets, and the offer's packages (jobs.broker.OfferedPackages)
        if isinstance(x, Container) and not isinstance(x, str | bytes):
            return y in x
        if isinstance(y, Container) and not isinstance(y, str | bytes):
            return x in y
        if isinstance(y, str) and isinstance(x, str):
            return x in y.split(",")
    except TypeError:  # an unhashable value against a set
        pass
    return False


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is Undefined or b is Undefined:
        return False
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.lower(), b.lower()  # ClassAds compare strings case-insensitively
    try:
        if op == "==":
            return bool(a == b)
        if op == "!=":
            return bool(a != b)
        if op == "<":
            return bool(a < b)
        if op == ">":
            return bool(a > b)
        if op == "<=":
            return bool(a <= b)
        return bool(a >= b)
    except TypeError:
        return False


def compile_tokens(toks: list[Tok]) -> Evaluator:
    """An evaluator for an expression already cut into tokens (the last one 'eof'), e.g.
    the Requirements of a JDL, so that an error says the JDL's own line and column."""
    fn = _Compiler(toks).compile()
    return lambda env: _truth(fn(env))


@functools.lru_cache(maxsize=4096)
def compile_requirements(text: str) -> Evaluator:
    """A callable env -> bool for a Requirements text ('' is always true)."""
    if not text.strip():
        return lambda env: True
    if len(text) > MAX_EXPRESSION:
        raise JdlError(f"Requirements longer than {MAX_EXPRESSION} characters", 1, 1)
    return compile_tokens(tokens(text))
