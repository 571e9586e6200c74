"""Loading job files: YAML with positions, `${VAR}` substitution, `--set` overrides, and errors that name
the key path, the file and line, and what is allowed. Never a traceback for bad input."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from crawler._config import Job

__all__ = ["JobError", "JobProblem", "load_job", "load_job_text"]

Position = tuple[int, int]  # 1-based line, column
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class JobProblem:
    path: str  # dotted key path, e.g. "concurrency.workers"
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, source: str) -> str:
        where = source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f"{self.path}: " if self.path else ""
        return f"{where}: {key}{self.message}"


class JobError(ValueError):
    """A job file that cannot be used. `problems` lists every bad key with its position."""

    def __init__(self, source: str, problems: list[JobProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"invalid job {self.source}:"] if len(self.problems) > 1 else []
        lines += [("  " if len(self.problems) > 1 else "") + p.format(self.source) for p in self.problems]
        return "\n".join(lines)


def _construct(node: yaml.Node, loader: yaml.SafeLoader, path: tuple[Any, ...],
               positions: dict[tuple[Any, ...], Position]) -> Any:  # fmt: skip
    """Build plain Python data from a composed YAML node, recording each key's position."""
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise JobError("", [JobProblem(_dotted(path), "mapping keys must be plain scalars",
                                               key_node.start_mark.line + 1, key_node.start_mark.column + 1)])
            positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, loader, (*path, key), positions)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loader, (*path, i), positions) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    positions: dict[tuple[Any, ...], Position] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, positions
        return _construct(node, loader, (), positions), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = (exc.problem or str(exc)).strip()
        if exc.context:
            msg = f"{exc.context.strip()}: {msg}"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise JobError(source, [JobProblem("", f"YAML syntax error: {msg}", line, col)]) from None
    except yaml.YAMLError as exc:
        raise JobError(source, [JobProblem("", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _substitute_env(data: Any, path: tuple[Any, ...], problems: list[JobProblem],
                    positions: dict[tuple[Any, ...], Position]) -> Any:  # fmt: skip
    if isinstance(data, dict):
        return {k: _substitute_env(v, (*path, k), problems, positions) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute_env(v, (*path, i), problems, positions) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def repl(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is not None:
                    return m.group(2)
                line, col = positions.get(path, (None, None))
                problems.append(JobProblem(_dotted(path), f"environment variable {m.group(1)} is not set "
                                           f"(use ${{{m.group(1)}:-default}} for a default)", line, col))
                return ""
            return value

        return _ENV_RE.sub(repl, data)
    return data


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at `path`, for suggestions of allowed keys."""
    model: type[BaseModel] = Job
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            for f in model.model_fields.values():
                if f.alias == part:
                    field = f
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _problems_from_validation(exc: ValidationError, data: Any,
                              positions: dict[tuple[Any, ...], Position]) -> list[JobProblem]:  # fmt: skip
    problems: list[JobProblem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds union-branch names (e.g. "bool", "str") to the loc: keep only real keys.
        real: tuple[Any, ...] = ()
        node: Any = data
        for part in loc:
            if isinstance(node, dict) and part in node:
                real = (*real, part)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                real = (*real, part)
                node = node[part]
            elif err["type"] in {"extra_forbidden", "missing"} and part == loc[-1]:
                real = (*real, part)
            else:
                continue
        line, col = positions.get(real, positions.get(real[:-1], (None, None))) if real else (None, None)
        if err["type"] == "extra_forbidden":
            parent = _model_at(real[:-1])
            allowed = _allowed_keys(parent) if parent else []
            msg = "unknown key"
            close = difflib.get_close_matches(str(real[-1]), allowed, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if err["type"] not in {"value_error", "assertion_error"} and "input" in err and not isinstance(
                err["input"], dict | list
            ):
                msg += f" (got {err['input']!r})"
        problems.append(JobProblem(_dotted(real), msg, line, col))
    # One line per bad key: unions can report the same key more than once.
    seen: set[tuple[str, int | None]] = set()
    unique = []
    for p in problems:
        if (p.path, p.line) not in seen:
            seen.add((p.path, p.line))
            unique.append(p)
    return unique


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value`; the value is parsed as YAML so types follow the schema."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise JobError("--set", [JobProblem("", f"{assignment!r} is not dotted.key=value")])
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise JobError("--set", [JobProblem(".".join(parts[: i + 1]), "is not a mapping; cannot set a key in it")])
        node = child
    node[parts[-1]] = value


def load_job_text(text: str, source: str = "<job>", overrides: list[str] | None = None) -> Job:
    data, positions = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise JobError(source, [JobProblem("", "a job file is a YAML mapping of keys (name, start_urls, ...)", 1, 1)])
    problems: list[JobProblem] = []
    data = _substitute_env(data, (), problems, positions)
    if problems:
        raise JobError(source, problems)
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise JobError(source, _problems_from_validation(exc, data, positions)) from None


def load_job(path: str | Path, overrides: list[str] | None = None) -> Job:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError(str(path), [JobProblem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(str(path), [JobProblem("", f"cannot read: {exc}")]) from None
    return load_job_text(text, str(path), overrides)
