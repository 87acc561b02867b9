"""Option parsing as JAliEn's commands do it (jopt-simple): short flags may be combined
(``-la``), options and arguments may be interleaved, ``--`` ends the options, and an unknown
option is an EINVAL error that stops the command."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from jalien.commands.errno import EINVAL, jalien_error


@dataclass
class Options:
    flags: set[str] = field(default_factory=set)
    values: dict[str, list[str]] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def __contains__(self, flag: str) -> bool:
        return flag in self.flags or flag in self.values

    def value(self, name: str, default: str = "") -> str:
        found = self.values.get(name)
        return found[-1] if found else default

    def number(self, name: str, default: int = 0) -> int:
        raw = self.value(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            raise jalien_error(EINVAL, f"Option {name} needs a number, not {raw!r}") from None


def parse(args: list[str], flags: Iterable[str] = (), valued: Iterable[str] = ()) -> Options:
    """*flags* and *valued* are option names without the dash (``"l"``, ``"bulk"``)."""
    known, takes = set(flags), set(valued)
    out = Options()
    words = iter(args)
    for word in words:
        if word == "--":
            out.args.extend(words)
            break
        if len(word) < 2 or not word.startswith("-") or word[1:].lstrip("-").isdigit():
            out.args.append(word)
            continue
        name = word.lstrip("-")
        name, eq, inline = name.partition("=")
        if name in takes:
            value = inline if eq else next(words, None)
            if value is None:
                raise jalien_error(EINVAL, f"Option {name} requires an argument")
            out.values.setdefault(name, []).append(value)
        elif name in known and not eq:
            out.flags.add(name)
        elif not eq and all(ch in known for ch in name):
            out.flags.update(name)
        else:
            raise jalien_error(EINVAL, f"{word} is not a recognized option")
    return out
