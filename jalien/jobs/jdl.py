"""JDL, AliEn's job description language (ClassAd-like), parsed into typed structures.

    Executable = "/alice/bin/aliroot";
    Arguments = "-b -q sim.C";
    InputFile = {"LF:/alice/cern.ch/user/a/alice/sim.C"};
    OutputArchive = {"root_archive.zip:*.root@disk=2"};
    Requirements = member(other.GridPartitions, "PDC08") && other.TTL > 3600;
    TTL = 72000;

Attribute names are case-insensitive; values are strings, numbers, booleans, lists of
those, or expressions (kept as normalised text, e.g. Requirements). Errors say the line
and column. ``$1``..``$n`` in strings are the submit arguments.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from jalien.jobs.classad import (
    MAX_EXPRESSION,
    MAX_NESTING,
    MAX_NUMBER,
    JdlError,
    Tok,
    number,
    position,
    tokens,
    unquote,
)
from jalien.jobs.requirements import compile_requirements, compile_tokens

Value = str | int | float | bool | list[Any]

MAX_JDL_SIZE = 1 << 20
"""Longest JDL text read, in characters (the catalogue gives at most 1 MiB of a file)."""


class _Attr(msgspec.Struct, frozen=True):
    name: Tok  # as written, for the line and column of errors about its value
    value: Value


class _Parser:
    """attribute := name '=' value ';' ; value := literal | list | expression."""

    def __init__(self, text: str) -> None:
        self.toks = tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None, text: str | None = None) -> Tok:
        tok = self.toks[self.i]
        if (kind and tok.kind != kind) or (text and tok.text != text):
            want = repr(text) if text else kind
            raise JdlError(f"expected {want}, found {_shown(tok)}", tok.line, tok.col)
        self.i += 1
        return tok

    def document(self) -> dict[str, _Attr]:
        attrs: dict[str, _Attr] = {}
        while self.peek().kind != "eof":
            if self.peek().text == "[":  # tolerate a ClassAd wrapper
                self.i += 1
                continue
            name = self.take("name")
            self.take("op", "=")
            value = self.value()
            if self.peek().kind != "eof":
                self.take("op", ";")
            key = name.text.lower()
            if key in attrs:
                raise JdlError(f"attribute {name.text} given twice", name.line, name.col)
            attrs[key] = _Attr(name, value)
        return attrs

    def value(self, in_list: bool = False) -> Value:
        tok = self.peek()
        if tok.text == "{":
            return self.list_()
        start = self.i
        opened: list[Tok] = []  # the '(' not closed yet
        previous = ""
        while True:
            tok = self.peek()
            if tok.kind == "eof" or (not opened and tok.text in (";", ",", "}")):
                break
            operand = tok.kind in ("string", "number", "name")
            if operand and previous in ("string", "number", "name"):
                want = "',' or '}'" if in_list and not opened else "an operator or ';'"
                raise JdlError(f"expected {want}, found {tok.text!r}", tok.line, tok.col)
            previous = tok.kind if operand else tok.text
            if tok.text == "(":
                opened.append(tok)
                if len(opened) > MAX_NESTING:
                    raise JdlError(_too_deep("parentheses"), tok.line, tok.col)
            elif tok.text == ")":
                if not opened:
                    raise JdlError("unbalanced ')'", tok.line, tok.col)
                opened.pop()
            elif tok.text == "{":
                raise JdlError("a list cannot be part of an expression", tok.line, tok.col)
            self.i += 1
        parts = self.toks[start : self.i]
        if not parts:
            raise JdlError("missing value", tok.line, tok.col)
        if opened:
            raise JdlError("unbalanced '(' (not closed)", opened[-1].line, opened[-1].col)
        if len(parts) == 1:
            return _literal(parts[0])
        if len(parts) == 2 and parts[0].text == "-" and parts[1].kind == "number":
            return -number(parts[1])
        return _expression(parts)

    def list_(self) -> list[Any]:
        opening = self.take("op", "{")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise JdlError(_too_deep("lists"), opening.line, opening.col)
        items: list[Any] = []
        while self.peek().text != "}":
            items.append(self.value(in_list=True))
            if self.peek().text == ",":
                self.i += 1
            elif self.peek().text != "}":
                tok = self.peek()
                raise JdlError(f"expected ',' or '}}', found {_shown(tok)}", tok.line, tok.col)
        self.take("op", "}")
        self.depth -= 1
        return items


def _too_deep(what: str) -> str:
    return f"{what} nested deeper than {MAX_NESTING} levels"


def _shown(tok: Tok) -> str:
    return "end of input" if tok.kind == "eof" else repr(tok.text[:40])


def _literal(tok: Tok) -> Value:
    if tok.kind == "string":
        return unquote(tok.text)
    if tok.kind == "number":
        return number(tok)
    if tok.kind == "name" and tok.text.lower() in ("true", "false"):
        return tok.text.lower() == "true"
    if tok.kind == "name":
        return _expression([tok])
    raise JdlError(f"unexpected {tok.text!r}", tok.line, tok.col)


class Expression(str):
    """An unevaluated expression (Requirements, Rank), kept as normalised text; *origin*
    are its tokens as written (for the JDL's line and column in errors)."""

    origin: tuple[Tok, ...] = ()


# two operators written apart that would read as one token (or a comment) if joined
_FUSE = frozenset(("//", "==", "!=", "<=", ">=", "&&", "||"))


def _expression(parts: list[Tok]) -> Expression:
    out = []
    previous = ""
    for tok in parts:
        if tok.kind == "op" and tok.text in ("&&", "||", "==", "!=", "<=", ">=", "<", ">"):
            out.append(f" {tok.text} ")
        elif tok.kind == "op" and tok.text == ",":
            out.append(", ")
        elif tok.kind == "op" and previous[-1:] + tok.text[:1] in _FUSE:
            out.append(" " + tok.text)
        else:
            out.append(tok.text)
        previous = out[-1]
    expression = Expression("".join(out).strip())
    expression.origin = tuple(parts)
    return expression


class OutputSpec(msgspec.Struct, frozen=True, kw_only=True):
    """'name[:members]@SE1,disk=2' -> where an output goes."""

    name: str
    members: list[str] = []
    ses: list[str] = []
    qos: dict[str, int] = {}
    no_archive: bool = False


class Jdl(msgspec.Struct, kw_only=True):
    executable: str
    arguments: str = ""
    input_file: list[str] = []
    input_data: list[str] = []
    input_data_collection: list[str] = []
    output_file: list[OutputSpec] = []
    output_archive: list[OutputSpec] = []
    output_dir: str = ""
    requirements: str = ""
    ttl: int = 3600
    price: float = 1.0
    packages: list[str] = []
    split: str = ""
    split_arguments: dict[str, str] = {}
    jdl_variables: list[str] = []
    memory_size: int = 0  # bytes
    cpu_cores: int = 1
    validation_command: str = ""
    user: str = ""
    email: str = ""
    attributes: dict[str, Any] = {}  # every attribute as written, by lower-case name

    def get(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name.lower(), default)


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)[bB]?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Value, where: str = "MemorySize") -> int:
    """'8GB', '512 MB', 1000 -> bytes (ValueError, naming *where*, if it is not a size)."""
    about = f"{where}: " if where else ""
    if isinstance(value, bool | list):
        raise ValueError(f"{about}not a size")
    if isinstance(value, int | float):
        size = value
    else:
        m = _SIZE.match(str(value))
        if m is None:
            raise ValueError(f"{about}{_cut(str(value))!r} is not a size like 8GB")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(size) or not 0 <= size <= MAX_NUMBER:
        raise ValueError(f"{about}{_cut(str(value))!r} is not a size from 0 to 8 EiB")
    return int(size)


def parse_output(spec: str) -> OutputSpec:
    """'root_archive.zip:*.root,*.C@disk=2' or 'result.root@ALICE::CERN::EOS,!ALICE::X::Y'."""
    text, _, where = spec.partition("@")
    name, _, members = text.partition(":")
    ses: list[str] = []
    qos: dict[str, int] = {}
    no_archive = False
    for part in filter(None, (p.strip() for p in where.split(","))):
        if part.lower() == "no_archive":
            no_archive = True
        elif "=" in part:
            tag, _, count = part.partition("=")
            if not count.strip().isdigit() or len(count.strip()) > 6:
                raise ValueError(f"bad storage spec {_cut(part)!r} in {_cut(spec)!r}")
            qos[tag.strip().lower()] = int(count)
        else:
            ses.append(part)
    return OutputSpec(
        name=name.strip(),
        members=[m for m in members.split(",") if m],
        ses=ses,
        qos=qos,
        no_archive=no_archive,
    )


def _cut(text: str, size: int = 60) -> str:
    return text if len(text) <= size else text[:size] + "..."


def _strings(value: Value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, list):
            raise ValueError("nested lists are not allowed")
        out.append(str(item))
    return out


def _substitute(value: Any, args: list[str]) -> Any:
    if isinstance(value, Expression):
        return value
    if isinstance(value, str):
        return re.sub(r"\$(\d+)", lambda m: _arg(args, m.group(1)), value)
    if isinstance(value, list):
        return [_substitute(v, args) for v in value]
    return value


def _arg(args: list[str], digits: str) -> str:
    n = int(digits) if len(digits) < 10 else 0
    if n < 1 or n > len(args):
        raise ValueError(f"${_cut(digits, 12)} is used but {len(args)} argument(s) were given")
    arg = args[n - 1]
    if "\n" in arg or "\0" in arg:
        raise ValueError(f"argument ${n} holds a line break or a NUL character")
    return arg


class _Fields:
    """The typed values of a JDL's attributes. ``at`` is the attribute being read: a
    ValueError about its value becomes a JdlError at its name (``error``)."""

    def __init__(self, values: dict[str, Any], attrs: dict[str, _Attr]) -> None:
        self.values = values
        self.attrs = attrs
        self.at = ""

    def name(self, key: str) -> Tok | None:
        attr = self.attrs.get(key)
        return attr.name if attr is not None else None

    def error(self, exc: Exception) -> JdlError:
        name = self.name(self.at)
        if name is None:
            return JdlError(str(exc), 1, 1)
        return JdlError(f"{name.text}: {exc}", name.line, name.col)

    def one(self, key: str, default: Any = None) -> Any:
        self.at = key
        value = self.values.get(key, default)
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("expected one value, got a list")
            value = value[0]
        return value

    def text(self, key: str) -> str:
        return str(self.one(key, ""))

    def strings(self, key: str) -> list[str]:
        self.at = key
        return _strings(self.values.get(key, []))

    def outputs(self, key: str) -> list[OutputSpec]:
        return [parse_output(spec) for spec in self.strings(key)]

    def integer(self, key: str, default: int, low: int) -> int:
        value = self.one(key, default)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        if isinstance(value, str):
            digits = value.strip().lstrip("+-")
            if not digits.isdigit():
                raise ValueError(f"{_cut(value)!r} is not a number")
            if len(digits) > 19:
                raise ValueError(f"{_cut(value)!r} is too large")
        number = int(value)
        if not low <= number <= MAX_NUMBER:
            raise ValueError(f"must be from {low} to {MAX_NUMBER}, not {number}")
        return number

    def real(self, key: str, default: float) -> float:
        value = float(self.one(key, default))
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number")
        return value

    def size(self, key: str) -> int:
        return parse_size(self.one(key, 0), "")

    def split_arguments(self) -> dict[str, str]:
        out = {}
        for key in self.values:
            if key == "splitmaxinputfilenumber":
                out[key] = str(self.integer(key, 0, 0))
            elif key.startswith("split") and key != "split":
                out[key] = str(self.one(key))
        return out


def _text(text: str | bytes) -> str:
    """The JDL as text: UTF-8, no NUL, at most MAX_JDL_SIZE characters."""
    if len(text) > MAX_JDL_SIZE:
        raise JdlError(f"JDL longer than {MAX_JDL_SIZE} characters ({len(text)})", 1, 1)
    if isinstance(text, bytes | bytearray):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = raw[: exc.start].decode("utf-8")
            raise JdlError("not UTF-8 text", *position(good, len(good))) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise JdlError("not UTF-8 text", *position(text, exc.start)) from None
    nul = text.find("\0")
    if nul >= 0:
        raise JdlError("NUL character in JDL", *position(text, nul))
    return text


def parse_jdl(text: str | bytes, args: list[str] | None = None) -> Jdl:
    """Parse and check a JDL. Anything wrong raises JdlError with the line and column:
    syntax, nesting deeper than MAX_NESTING, a value of the wrong kind or out of range,
    Requirements that do not compile. *args* replace $1..$n in strings (submit); without
    them (None) the text is taken as written: a stored JDL, already substituted."""
    text = _text(text)
    attrs = _Parser(text).document()
    values: dict[str, Any] = {}
    fields = _Fields(values, attrs)
    try:
        for key, attr in attrs.items():
            fields.at = key
            values[key] = attr.value if args is None else _substitute(attr.value, args)
        executable = fields.one("executable")
        if not executable or not isinstance(executable, str):
            where = fields.name("executable")
            line, col = (where.line, where.col) if where else position(text, len(text))
            raise JdlError("Executable: missing (every JDL names the program to run)", line, col)
        jdl = Jdl(
            executable=str(executable),
            arguments=" ".join(fields.strings("arguments")),
            input_file=fields.strings("inputfile"),
            input_data=fields.strings("inputdata"),
            input_data_collection=fields.strings("inputdatacollection"),
            output_file=fields.outputs("outputfile"),
            output_archive=fields.outputs("outputarchive"),
            output_dir=fields.text("outputdir"),
            requirements=fields.text("requirements"),
            ttl=fields.integer("ttl", 3600, 1),
            price=fields.real("price", 1.0),
            packages=fields.strings("packages"),
            split=fields.text("split"),
            split_arguments=fields.split_arguments(),
            jdl_variables=fields.strings("jdlvariables"),
            memory_size=fields.size("memorysize"),
            cpu_cores=fields.integer("cpucores", 1, 1),
            validation_command=fields.text("validationcommand"),
            user=fields.text("user"),
            email=fields.text("email"),
            attributes=values,
        )
    except JdlError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise fields.error(exc) from None
    _check_requirements(fields.one("requirements", ""), fields.name("requirements"))
    return jdl


def _check_requirements(value: Any, name: Tok | None) -> None:
    """Requirements compile (cached by text, as the broker compiles them); if not, the
    error says where in the JDL."""
    if not isinstance(value, str) or not value.strip():
        return
    line, col = (name.line, name.col) if name is not None else (1, 1)
    if len(value) > MAX_EXPRESSION:
        raise JdlError(f"Requirements longer than {MAX_EXPRESSION} characters", line, col)
    try:
        compile_requirements(str(value))
    except JdlError as exc:
        if isinstance(value, Expression) and value.origin:
            last = value.origin[-1]
            end = Tok("eof", "", last.line, last.col + len(last.text))
            compile_tokens([*value.origin, end])  # raises at the JDL's line and column
        where = f"column {exc.column} of the Requirements text"
        raise JdlError(f"{exc.reason} ({where})", line, col) from None


def render_jdl(jdl: Jdl) -> str:
    """The JDL as text again (what jobinfo shows and a JobAgent reads)."""
    lines = []
    for key, value in jdl.attributes.items():
        lines.append(f"{key} = {_render(value)};")
    return "\n".join(lines) + "\n"


def _render(value: Any) -> str:
    if isinstance(value, Expression):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "{" + ", ".join(_render(v) for v in value) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
