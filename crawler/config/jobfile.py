"""Loading job files: YAML with positions, `${VAR}` substitution, `--set` overrides, and errors that name
the key path, the file and line, and what is allowed. Never a traceback for bad input.

Bounded while parsing, not after: a job file is at most `MAX_JOB_BYTES` (checked before it is read
whole), the YAML composer stops at `MAX_NODES` nodes as it builds them (so a 50 MB list is refused in
milliseconds, not after gigabytes), expanded aliases count against the same cap, and an integer of more
than 64 bits is refused at its position (Python would refuse a 5,000-digit one with a traceback).

Generic over the root pydantic model, so this module does not depend on the job model (`crawler.config.job`
builds `load_job` on it)."""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

__all__ = ["JobError", "JobProblem", "apply_override", "load_model", "load_model_text"]

M = TypeVar("M", bound=BaseModel)

Position = tuple[int, int]  # 1-based line, column
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A job file is small: more than this is a mistake (a data file named as the job) or an attack.
MAX_JOB_BYTES = 1024 * 1024
# More YAML nodes than this, composed or expanded from aliases ("billion laughs"), is not a job either.
MAX_NODES = 100_000
_MAX_INT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class JobProblem:
    path: str  # dotted key path, e.g. "concurrency.workers"
    message: str
    line: int | None = None
    column: int | None = None
    origin: str | None = None  # where the value came from when not the file, e.g. "--set scope.max_pages=x"

    def format(self, source: str) -> str:
        if self.origin is not None:
            key = f"{self.path}: " if self.path else ""
            return f"{self.origin}: {key}{self.message}"
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


class _Builder:
    """Builds plain Python data from a composed YAML node, recording each key's position, refusing
    recursive aliases and alias bombs."""

    def __init__(
        self, loader: yaml.SafeLoader, source: str, positions: dict[tuple[Any, ...], Position]
    ) -> None:
        self.loader = loader
        self.source = source
        self.positions = positions
        self.nodes = 0
        self.active: set[int] = set()  # ids of the collection nodes being built: a repeat is a cycle

    def _problem(self, path: tuple[Any, ...], node: yaml.Node, message: str) -> JobError:
        mark = node.start_mark
        return JobError(self.source, [JobProblem(_dotted(path), message, mark.line + 1, mark.column + 1)])

    def build(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self._problem(path, node, f"aliases expand the document to more than {MAX_NODES:,} values "
                                            "(an alias bomb?)")  # fmt: skip
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(path, node)
        if id(node) in self.active:
            raise self._problem(path, node, "a recursive alias (a value that contains itself)")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
            self.loader.flatten_mapping(node)  # `<<: *anchor` merges come first; own keys override them
            out: dict[Any, Any] = {}
            own_keys: set[Any] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._problem(path, key_node, "mapping keys must be plain scalars")
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise self._problem(path, key_node, "mapping keys must be plain scalars")
                if id(key_node) in own:
                    if key in own_keys:
                        raise self._problem((*path, key), key_node, "duplicate key")
                    own_keys.add(key)
                self.positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, (*path, key))
            return out
        finally:
            self.active.discard(id(node))

    def _scalar(self, path: tuple[Any, ...], node: yaml.Node) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except ValueError:  # an integer of more than 4,300 digits: Python refuses to convert it
            raise self._problem(path, node, "number too large") from None
        if isinstance(value, int) and not isinstance(value, bool) and not -_MAX_INT - 1 <= value <= _MAX_INT:
            raise self._problem(path, node, "integer out of range (more than 64 bits)")
        return value


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that counts nodes as it composes them and stops at `MAX_NODES`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.composed += 1
        if self.composed > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooManyNodes(mark)
        return super().compose_node(parent, index)


class _TooManyNodes(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.mark = mark


# libyaml's parser when installed (about 8x faster); the pure-Python one otherwise, bounded as it composes.
_CLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_COUNTED = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _count_nodes(loader_class: type[yaml.SafeLoader], text: str) -> None:
    """Stop at the first event past `MAX_NODES`, before anything is composed (libyaml composes in C, where
    it cannot be counted)."""
    loader = loader_class(text)
    try:
        seen = 0
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, _COUNTED):
                seen += 1
                if seen > MAX_NODES:
                    raise _TooManyNodes(event.start_mark)
    finally:
        loader.dispose()


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    positions: dict[tuple[Any, ...], Position] = {}
    if len(text) > MAX_JOB_BYTES:
        raise JobError(source, [JobProblem("", _too_big(len(text)))])
    try:
        yaml.reader.Reader(text)  # checks every character up front
    except yaml.reader.ReaderError as exc:  # control characters and the like
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problem = f"character #x{code:04x} ({chr(code)!r}) is not allowed in YAML"
        raise JobError(source, [JobProblem("", problem, line, col)]) from None
    loader: yaml.SafeLoader | None = None
    try:
        if _CLoader is not None:
            _count_nodes(_CLoader, text)
            loader = _CLoader(text)
        else:
            loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return {}, positions
        return _Builder(loader, source, positions).build(node, ()), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = (exc.problem or str(exc)).strip()
        if exc.context:
            msg = f"{exc.context.strip()}: {msg}"
        where: tuple[int | None, int | None] = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise JobError(source, [JobProblem("", f"YAML syntax error: {msg}", *where)]) from None
    except yaml.YAMLError as exc:
        raise JobError(source, [JobProblem("", f"YAML error: {exc}")]) from None
    except _TooManyNodes as exc:
        where = (exc.mark.line + 1, exc.mark.column + 1)
        raise JobError(source, [JobProblem("", f"more than {MAX_NODES:,} values: a job file is not a data file",
                                           *where)]) from None  # fmt: skip
    except RecursionError:
        raise JobError(source, [JobProblem("", "the document is nested too deeply")]) from None
    finally:
        if loader is not None:
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
                problems.append(
                    JobProblem(
                        _dotted(path),
                        f"environment variable {m.group(1)} is not set "
                        f"(use ${{{m.group(1)}:-default}} for a default)",
                        line,
                        col,
                    )
                )
                return ""
            return value

        return _ENV_RE.sub(repl, data)
    return data


def _field_of(model: type[BaseModel], key: Any) -> FieldInfo | None:
    if not isinstance(key, str):
        return None
    field = model.model_fields.get(key)
    if field is None:
        field = next((f for f in model.model_fields.values() if f.alias == key), None)
    return field


def _submodel(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _model_at(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at `path`, for suggestions of allowed keys."""
    model = root
    for part in path:
        field = _field_of(model, part)
        nxt = _submodel(field.annotation) if field is not None else None
        if nxt is None:
            return None
        model = nxt
    return model


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _origin_of(path: tuple[Any, ...], overridden: dict[tuple[Any, ...], str],
               positions: dict[tuple[Any, ...], Position]) -> str | None:  # fmt: skip
    """The `--set` assignment that supplied the value at `path`: one that set it or a key inside it, or
    one that created it (a key the file does not have)."""
    for target, assignment in overridden.items():
        if path[: len(target)] == target or (target[: len(path)] == path and path not in positions):
            return f"--set {assignment}"
    return None


def _problems_from_validation(root: type[BaseModel], exc: ValidationError, data: Any,
                              positions: dict[tuple[Any, ...], Position],
                              overridden: dict[tuple[Any, ...], str] | None = None) -> list[JobProblem]:  # fmt: skip
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
        if err["type"] == "extra_forbidden" and real:
            parent = _model_at(root, real[:-1])
            allowed = _allowed_keys(parent) if parent else []
            msg = "unknown key"
            import difflib  # only to suggest a name for an unknown key

            close = difflib.get_close_matches(str(real[-1]), allowed, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"])
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if len(msg) > 300:  # a message quoting a hostile value whole: keep its start and its advice
                msg = msg[:200] + " ... " + msg[-80:]
            if (
                err["type"] not in {"value_error", "assertion_error"}
                and "input" in err
                and not isinstance(err["input"], dict | list)
            ):
                shown = repr(err["input"])
                msg += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        origin = _origin_of(real, overridden, positions) if overridden else None
        problems.append(
            JobProblem(_dotted(real), msg, None if origin else line, None if origin else col, origin)
        )
    problems.sort(key=lambda p: (p.origin is not None, p.line or 0, p.column or 0))
    # One line per bad key: unions can report the same key more than once.
    seen: set[tuple[str, int | None, str | None]] = set()
    unique = []
    for p in problems:
        if (p.path, p.line, p.origin) not in seen:
            seen.add((p.path, p.line, p.origin))
            unique.append(p)
    return unique


_INDEX_RE = re.compile(r"\[(-?\d+)\]")


def _target_annotation(root: type[BaseModel], parts: list[str]) -> tuple[Any, int]:
    """The schema annotation of the key at `parts` and how many parts name schema keys. When a path
    reaches a field that is not a section (a dict such as `http.headers` or `rate_limit.hosts`), the
    rest of the path is one key of that dict: `rate_limit.hosts.example.com` sets the key `example.com`."""
    model = root
    for i, part in enumerate(parts):
        field = _field_of(model, part)
        if field is None:
            return None, i
        nxt = _submodel(field.annotation)
        if i == len(parts) - 1:
            return field.annotation, i + 1
        if nxt is None:
            args = getattr(field.annotation, "__args__", ())
            value_type = args[-1] if getattr(field.annotation, "__origin__", None) is dict and args else None
            return value_type, i + 1
        model = nxt
    return None, len(parts)


def _union_args(annotation: Any) -> tuple[Any, ...]:
    return (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else ()
    )


def _is_str_type(annotation: Any) -> bool:
    if annotation is str:
        return True
    args = _union_args(annotation)
    return str in args and all(a in (str, type(None)) for a in args)


def _is_list_type(annotation: Any) -> bool:
    candidates = [annotation, *_union_args(annotation)]
    return any(typing.get_origin(c) is list for c in candidates)


def _typed_value(raw: str, annotation: Any) -> Any:
    """The value of `--set key=RAW`, typed by the schema: strings stay strings (`--set name=123`), lists
    take a single value as a one-element list, everything else is parsed as YAML (`50`, `true`, `5/s`,
    `[a, b]`, `{k: v}`)."""
    text = raw.strip()
    if _is_str_type(annotation):
        if text in ("null", "~", "") and type(None) in _union_args(annotation):
            return None
        return raw
    try:
        value = yaml.safe_load(raw) if text else ""
    except yaml.YAMLError:
        value = raw
    if _is_list_type(annotation) and not isinstance(value, list) and value is not None:
        return [raw if isinstance(value, str | int | float | bool) else value]
    return value


def apply_override(root: type[BaseModel], data: dict[str, Any], assignment: str) -> tuple[Any, ...]:
    """Apply one `--set dotted.key=value` (typed by the schema, see `_typed_value`); returns the key path
    it set. List items are addressed as `start_urls[0]` or `start_urls.0` (the next index appends)."""
    key, sep, raw = assignment.partition("=")
    key = _INDEX_RE.sub(r".\1", key.strip())
    parts = [p.strip() for p in key.split(".")]
    if not sep or not key or any(not p for p in parts):
        raise JobError("--set", [JobProblem("", f"{assignment!r} is not dotted.key=value", origin="--set")])
    annotation, schema_parts = _target_annotation(root, parts)
    if 0 < schema_parts < len(parts):  # the rest is one key of a dict field
        parts = [*parts[:schema_parts], ".".join(parts[schema_parts:])]
    value = _typed_value(raw, annotation)
    node: Any = data
    path: tuple[Any, ...] = ()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.lstrip("-").isdigit():
                raise JobError("--set", [JobProblem(_dotted(path), f"is a list; address its items as "
                                                    f"{_dotted(path)}[0]", origin=f"--set {assignment}")])  # fmt: skip
            index = int(part)
            if not -len(node) <= index <= len(node) or (index == len(node) and not last):
                raise JobError("--set", [JobProblem(_dotted(path), f"has {len(node)} items; index {index} is out of "
                                                    "range", origin=f"--set {assignment}")])  # fmt: skip
            index %= len(node) + 1 if index == len(node) else max(len(node), 1)
            path = (*path, index)
            if last:
                if index == len(node):
                    node.append(value)
                else:
                    node[index] = value
                return path
            node = node[index]
            continue
        if not isinstance(node, dict):
            raise JobError("--set", [JobProblem(_dotted(path), "is not a mapping; cannot set a key in it",
                                                origin=f"--set {assignment}")])  # fmt: skip
        path = (*path, part)
        if last:
            node[part] = value
            return path
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        node = child
    return path


def load_model_text(text: str, root: type[M], source: str = "<job>", overrides: list[str] | None = None) -> M:
    """Parse YAML `text` into a `root` model: `${VAR}` substituted, `--set` overrides applied, every problem
    reported with its key path and file position."""
    data, positions = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise JobError(
            source, [JobProblem("", "a job file is a YAML mapping of keys (name, start_urls, ...)", 1, 1)]
        )
    # Top-level `x-...` keys are extensions that hold YAML anchors for reuse (as in compose files).
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    problems: list[JobProblem] = []
    data = _substitute_env(data, (), problems, positions)
    if problems:
        raise JobError(source, problems)
    overridden: dict[tuple[Any, ...], str] = {}
    for assignment in overrides or []:
        overridden[apply_override(root, data, assignment)] = assignment
    try:
        model = root.model_validate(data)
    except ValidationError as exc:
        raise JobError(source, _problems_from_validation(root, exc, data, positions, overridden)) from None
    return model


def _too_big(size: int) -> str:
    return f"is {size / 1e6:.1f} MB; a job file is at most {MAX_JOB_BYTES // 1024} KiB"


def load_model(path: str | Path, root: type[M], overrides: list[str] | None = None) -> M:
    p = Path(path)
    try:
        with p.open("rb") as f:  # read at most one byte past the cap: a huge file is never read whole
            raw = f.read(MAX_JOB_BYTES + 1)
        if len(raw) > MAX_JOB_BYTES:
            size = p.stat().st_size if p.is_file() else len(raw)
            raise JobError(str(path), [JobProblem("", _too_big(size))])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise JobError(str(path), [JobProblem("", "no such file")]) from None
    except IsADirectoryError:
        raise JobError(str(path), [JobProblem("", "is a directory, not a job file")]) from None
    except UnicodeDecodeError as exc:
        raise JobError(
            str(path), [JobProblem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise JobError(str(path), [JobProblem("", f"cannot read: {exc.strerror or exc}")]) from None
    return load_model_text(text, root, str(path), overrides)
