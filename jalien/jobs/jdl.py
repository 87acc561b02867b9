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

import re
from typing import Any

import msgspec

Value = str | int | float | bool | list[Any]

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
        self.line = line
        self.column = column


class _Tok(msgspec.Struct, frozen=True):
    kind: str
    text: str
    line: int
    col: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == '"':
                raise JdlError("unterminated string", line, pos - line_start + 1)
            raise JdlError(f"unexpected character {ch!r}", line, pos - line_start + 1)
        kind = m.lastgroup or ""
        if kind == "nl":
            line += 1
            line_start = m.end()
        elif kind not in ("ws", "comment"):
            out.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    out.append(_Tok("eof", "", line, pos - line_start + 1))
    return out


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    """attribute := name '=' value ';' ; value := literal | list | expression."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if (kind and tok.kind != kind) or (text and tok.text != text):
            want = repr(text) if text else kind
            got = "end of input" if tok.kind == "eof" else repr(tok.text)
            raise JdlError(f"expected {want}, found {got}", tok.line, tok.col)
        self.i += 1
        return tok

    def document(self) -> dict[str, tuple[str, Value]]:
        attrs: dict[str, tuple[str, Value]] = {}
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
            attrs[key] = (name.text, value)
        return attrs

    def value(self, in_list: bool = False) -> Value:
        tok = self.peek()
        if tok.text == "{":
            return self.list_()
        start = self.i
        depth = 0
        previous = ""
        while True:
            tok = self.peek()
            if tok.kind == "eof" or (depth == 0 and tok.text in (";", ",", "}")):
                break
            operand = tok.kind in ("string", "number", "name")
            if operand and previous in ("string", "number", "name"):
                want = "',' or '}'" if in_list and depth == 0 else "an operator or ';'"
                raise JdlError(f"expected {want}, found {tok.text!r}", tok.line, tok.col)
            previous = tok.kind if operand else tok.text
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
                if depth < 0:
                    raise JdlError("unbalanced ')'", tok.line, tok.col)
            elif tok.text == "{":
                raise JdlError("a list cannot be part of an expression", tok.line, tok.col)
            self.i += 1
        parts = self.toks[start : self.i]
        if not parts:
            raise JdlError("missing value", tok.line, tok.col)
        if depth:
            raise JdlError("unbalanced '('", parts[0].line, parts[0].col)
        if len(parts) == 1:
            return _literal(parts[0])
        if len(parts) == 2 and parts[0].text == "-" and parts[1].kind == "number":
            return -_literal(parts[1])  # type: ignore[operator]
        return _expression(parts)

    def list_(self) -> list[Any]:
        self.take("op", "{")
        items: list[Any] = []
        while self.peek().text != "}":
            items.append(self.value(in_list=True))
            if self.peek().text == ",":
                self.i += 1
            elif self.peek().text != "}":
                tok = self.peek()
                got = "end of input" if tok.kind == "eof" else repr(tok.text)
                raise JdlError(f"expected ',' or '}}', found {got}", tok.line, tok.col)
        self.take("op", "}")
        return items


def _literal(tok: _Tok) -> Value:
    if tok.kind == "string":
        return _unquote(tok.text)
    if tok.kind == "number":
        return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
    if tok.kind == "name" and tok.text.lower() in ("true", "false"):
        return tok.text.lower() == "true"
    if tok.kind == "name":
        return _expression([tok])
    raise JdlError(f"unexpected {tok.text!r}", tok.line, tok.col)


class Expression(str):
    """An unevaluated expression (Requirements, Rank), kept as normalised text."""


def _expression(parts: list[_Tok]) -> Expression:
    out = []
    for tok in parts:
        if tok.kind == "op" and tok.text in ("&&", "||", "==", "!=", "<=", ">=", "<", ">"):
            out.append(f" {tok.text} ")
        elif tok.kind == "op" and tok.text == ",":
            out.append(", ")
        else:
            out.append(tok.text)
    return Expression("".join(out).strip())


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
    if isinstance(value, bool):
        raise ValueError(f"{where}: not a size")
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"{where}: {value!r} is not a size like 8GB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


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
            try:
                qos[tag.strip().lower()] = int(count)
            except ValueError:
                raise ValueError(f"bad storage spec {part!r} in {spec!r}") from None
        else:
            ses.append(part)
    return OutputSpec(
        name=name.strip(),
        members=[m for m in members.split(",") if m],
        ses=ses,
        qos=qos,
        no_archive=no_archive,
    )


def _strings(value: Value, name: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, list):
            raise ValueError(f"{name}: nested lists are not allowed")
        out.append(str(item))
    return out


def _substitute(value: Any, args: list[str]) -> Any:
    if isinstance(value, Expression):
        return value
    if isinstance(value, str):
        return re.sub(r"\$(\d+)", lambda m: _arg(args, int(m.group(1))), value)
    if isinstance(value, list):
        return [_substitute(v, args) for v in value]
    return value


def _arg(args: list[str], n: int) -> str:
    if n < 1 or n > len(args):
        raise ValueError(f"${n} is used but only {len(args)} argument(s) were given")
    return args[n - 1]


def parse_jdl(text: str, args: list[str] | None = None) -> Jdl:
    """Parse and check a JDL; JdlError (line, column) for syntax, ValueError for meaning."""
    if "\0" in text:
        raise JdlError("NUL character in JDL", 1, text.index("\0") + 1)
    raw = _Parser(text).document()
    values = {k: _substitute(v, args or []) for k, (_, v) in raw.items()}

    def one(name: str, default: Any = None) -> Any:
        value = values.get(name.lower(), default)
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"{name}: expected one value, got a list")
            value = value[0]
        return value

    executable = one("executable")
    if not executable or not isinstance(executable, str):
        raise ValueError("Executable: missing (every JDL names the program to run)")
    try:
        ttl = int(one("ttl", 3600))
        price = float(one("price", 1.0))
        cores = int(one("cpucores", 1))
    except (TypeError, ValueError):
        raise ValueError("TTL, Price and CPUCores must be numbers") from None
    if ttl <= 0:
        raise ValueError("TTL must be positive")
    split_args = {k: str(one(k)) for k in values if k.startswith("split") and k != "split"}
    return Jdl(
        executable=executable,
        arguments=" ".join(_strings(values.get("arguments", []), "Arguments")),
        input_file=_strings(values.get("inputfile", []), "InputFile"),
        input_data=_strings(values.get("inputdata", []), "InputData"),
        input_data_collection=_strings(
            values.get("inputdatacollection", []), "InputDataCollection"
        ),
        output_file=[parse_output(s) for s in _strings(values.get("outputfile", []), "OutputFile")],
        output_archive=[
            parse_output(s) for s in _strings(values.get("outputarchive", []), "OutputArchive")
        ],
        output_dir=str(one("outputdir", "")),
        requirements=str(one("requirements", "")),
        ttl=ttl,
        price=price,
        packages=_strings(values.get("packages", []), "Packages"),
        split=str(one("split", "")),
        split_arguments=split_args,
        jdl_variables=_strings(values.get("jdlvariables", []), "JDLVariables"),
        memory_size=parse_size(one("memorysize", 0)),
        cpu_cores=cores,
        validation_command=str(one("validationcommand", "")),
        user=str(one("user", "")),
        email=str(one("email", "")),
        attributes={k: v for k, v in values.items()},
    )


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
