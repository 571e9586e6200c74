"""The small languages a job is written in, parsed once at validation and again by the stage that runs them:
field selectors (`h1::text`, `a::attr(href)[]`), JSON key paths (`data.items[*].name`), CSS selectors, and the
items file format named by its extension."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["STDOUT", "WILDCARD", "FieldSpec", "KeyPath", "Step", "check_css", "parse_field_spec", "parse_key_path",
           "writer_format"]  # fmt: skip

_SPEC_RE = re.compile(
    r"^(?P<css>.*?)(?:::(?P<kind>text|all-text|attr\((?P<attr>[^)]+)\)|html))?(?P<all>\[\])?\s*$", re.S
)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field selector. `kind`: "text" (the element's own text nodes, as Scrapy's `::text`),
    "all-text" (the text of the whole subtree: a selector without a suffix, or `::all-text`), "attr" or
    "html". `pattern`: the optional `re:` applied to each value (its first group, else the whole match)."""

    css: str
    kind: str
    attr: str | None
    all: bool
    pattern: re.Pattern[str] | None = None


def parse_field_spec(spec: str, pattern: str | None = None) -> FieldSpec:
    """Parse `selector[::text|::all-text|::attr(name)|::html][[]]` and an optional regex; raises ValueError
    for an invalid selector or regex."""
    m = _SPEC_RE.match(spec.strip())
    if not m or not m.group("css").strip():
        raise ValueError(f"{spec!r} is not a CSS selector with an optional ::text, ::all-text, ::attr(name) "
                         "or ::html")  # fmt: skip
    css = check_css(m.group("css").strip())
    kind = (m.group("kind") or "all-text").split("(", 1)[0]
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    attr = (m.group("attr") or "").strip().strip("\"'") or None
    return FieldSpec(css, kind, attr, bool(m.group("all")), compiled)


def check_css(css: str) -> str:
    """`css` if selectolax accepts it as a selector; ValueError naming it otherwise."""
    # Imported here: loading selectolax costs start-up time a job without selectors never needs.
    from selectolax.lexbor import LexborHTMLParser

    try:
        LexborHTMLParser("<html></html>").css(css)
    except Exception as exc:  # selectolax raises ValueError or its own errors for bad selectors
        raise ValueError(f"invalid CSS selector {css!r}: {exc}") from None
    return css


class _Wildcard:
    def __repr__(self) -> str:
        return "*"


WILDCARD: Final = _Wildcard()
Step = str | int | _Wildcard
KeyPath = tuple[Step, ...]


def parse_key_path(path: str) -> KeyPath:
    """Parse a key path; ValueError says what is wrong with it."""
    if not isinstance(path, str):
        raise ValueError(f"a key path is a string like 'data.items[0].name', not {type(path).__name__}")
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    steps: list[Step] = []
    i, n = 0, len(text)
    expect_key = True  # at the start or after a dot
    while i < n:
        c = text[i]
        if c == ".":
            if expect_key:
                raise ValueError(f"invalid key path {path!r}: empty key at position {i + 1}")
            expect_key = True
            i += 1
            continue
        if c == "[":
            end = text.find("]", i)
            inner = text[i + 1 : end].strip() if end > 0 else None
            if inner is None:
                raise ValueError(f"invalid key path {path!r}: '[' without ']'")
            if inner[:1] in ("'", '"'):
                quote = inner[0]
                close = text.find(quote + "]", i + 2)
                if close < 0:
                    raise ValueError(f"invalid key path {path!r}: unterminated quoted key")
                steps.append(text[i + 2 : close])
                i = close + 2
            else:
                if inner in ("", "*"):
                    steps.append(WILDCARD)
                else:
                    try:
                        steps.append(int(inner))
                    except ValueError:
                        raise ValueError(f"invalid key path {path!r}: [{inner}] is not an index, * or a "
                                         "quoted key") from None  # fmt: skip
                i = end + 1
            expect_key = False
            continue
        if not expect_key:
            raise ValueError(f"invalid key path {path!r}: expected '.' or '[' at position {i + 1}")
        j = i
        while j < n and text[j] not in ".[":
            j += 1
        key = text[i:j].strip()
        if "]" in key:
            raise ValueError(f"invalid key path {path!r}: ']' without '['; quote odd keys as [\"a]b\"]")
        if key == "*":
            steps.append(WILDCARD)
        elif key.lstrip("-").isdigit():
            steps.append(int(key))
        else:
            steps.append(key)
        expect_key = False
        i = j
    if expect_key and steps:
        raise ValueError(f"invalid key path {path!r}: it ends with a dot")
    return tuple(steps)


_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jl": "jsonl", ".csv": "csv", ".json": "json"}
# `output.items: "-"` (`-o -`): JSON lines on standard output.
STDOUT = "-"


def writer_format(path: str | os.PathLike[str]) -> str:
    """`jsonl`, `json` (one array) or `csv` from the extension (before any `.gz`), `jsonl` for `-` (standard
    output); ValueError naming the allowed ones otherwise."""
    if str(path) == STDOUT:
        return "jsonl"
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise ValueError(f"unknown items format {suffix or '(none)'!r} for {str(path)!r}: "
                         f"use one of {', '.join(sorted(_FORMATS))}, optionally followed by .gz, "
                         "or - for standard output")  # fmt: skip
    return fmt
