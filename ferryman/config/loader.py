"""``ferryman.toml`` -> `Config`, or a `ConfigError` naming every problem with its file, line and key.

Theory of operation: tomllib parses; the schema validates and collects every field error in one pass;
`cross_issues` adds the checks between tables, on the raw TOML data so that they run even when some
fields are invalid. Each error's location (a pydantic ``loc``) becomes a key path written the way the
operator would find it (``pool.django-http.members[1].url``), and `TomlLines` finds the line where that
key, array element or inline table is written; a key that is missing points at its table's line.
Messages come from the schema, already saying what would be valid; pydantic's own generic errors
(wrong type, unknown key, missing key) are reworded here.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_left
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from ferryman.config.schema import ERROR_TYPE, UNION_TAGS, Config, Loc, cross_issues, format_key, show
from ferryman.errors import ConfigError, ConfigIssue

__all__ = ["Source", "TomlLines", "load_config", "load_config_text"]


def load_config(path: str | Path) -> Config:
    """Read and validate the configuration file at `path`; relative paths in it are relative to its
    directory.

    Raises:
        ConfigError: every problem found, each with file, line and key.
        OSError: the file cannot be read.
    """
    path = Path(path)
    return load_config_text(read_config_text(path), str(path), path.parent)


def read_config_text(path: str | Path) -> str:
    """The text of the configuration file at `path` (what a master hands its workers, too).

    Raises:
        ConfigError: the file is not UTF-8 (with the line).
        OSError: the file cannot be read.
    """
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(str(path), line, "", "not UTF-8 text; save the file as UTF-8")]) from None


def load_config_text(text: str, filename: str, base_dir: Path) -> Config:
    """Validate configuration `text`; `filename` is only for messages, `base_dir` anchors relative paths.

    Raises:
        ConfigError: every problem found, each with file, line and key.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([_syntax_issue(str(e), text, filename)]) from None
    lines = TomlLines(text)
    found: list[tuple[Loc, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir, "defer_cross_checks": True})
    except ValidationError as e:
        errors = e.errors(include_url=False)
        found = [i for i in map(_issue, _without_misspelt(errors)) if i is not None]
    reported = {format_key(loc) for loc, _ in found}
    found += [(loc, msg) for loc, msg in cross_issues(data) if format_key(loc) not in reported]
    if found:
        issues = [ConfigIssue(filename, lines.line_of(loc), format_key(loc), msg) for loc, msg in found]
        issues.sort(key=lambda i: i.line or 0)
        raise ConfigError(issues)
    assert config is not None
    config._source = Source(filename, lines)
    return config


@dataclass(frozen=True, slots=True)
class Source:
    """Where a `Config` was read: its file name and the line of each key path."""

    filename: str
    lines: TomlLines


# -- messages ---------------------------------------------------------------------------------------

_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _syntax_issue(message: str, text: str, filename: str) -> ConfigIssue:
    """``file:7: TOML syntax error: Expected '=' after a key ... (column 5)``."""
    m = _AT.search(message)
    if m is None:
        return ConfigIssue(filename, None, "", f"TOML syntax error: {message}")
    line = int(m.group(1)) if m.group(1) else text.count("\n") + 1
    where = f" (column {m.group(2)})" if m.group(2) else " (at the end of the file)"
    return ConfigIssue(filename, line, "", f"TOML syntax error: {message[:m.start()]}{where}")


def _issue(err: ErrorDetails) -> tuple[Loc, str] | None:
    """A pydantic error as (key path, message that says what would be valid); None to drop it."""
    loc = _clean(err["loc"])
    kind, value = err["type"], err.get("input")
    if kind == ERROR_TYPE:
        return loc, err["msg"]
    if kind == "missing":
        return loc, f"missing; {_hint(loc)}"
    if kind == "extra_forbidden":
        return loc, _unknown_key(loc)
    if kind == "too_short":
        if value:  # items were given but failed: those errors say why, "empty" would mislead
            return None
        return loc, f"empty; {_hint(loc)}"
    if kind == "string_type":
        if isinstance(value, (list, tuple, dict)):
            return loc, f"{show(value)} is not a string; write {_hint(loc, 'one value in quotes')}"
        return loc, f'{show(value)} is not a string; write it in quotes, such as "{_plain(value)}"'
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return loc, f"{show(value)} is not a whole number; write one without quotes, such as 1"
    if kind in ("bool_type", "bool_parsing"):
        return loc, f"{show(value)} is not true or false; write true or false without quotes"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if len(loc) == 1 and _model_at(loc) is None:
            return loc, f"{show(value)} is not a table; write [{loc[0]}.NAME] tables, one per {loc[0]}"
        return loc, f"{show(value)} is not a table; write {_table_example(loc)}"
    if kind in ("tuple_type", "list_type"):
        if len(loc) == 1:
            return loc, f"{show(value)} is not a list; write [[{loc[0]}]] tables, one per {loc[0]}"
        return loc, f"{show(value)} is not a list; write [ ... ] with one item or more"
    ctx = err.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return loc, str(ctx["error"])
    return loc, err["msg"]


def _plain(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _clean(loc: tuple[str | int, ...]) -> Loc:
    return tuple(p for p in loc if p not in UNION_TAGS and p != "[key]")


def _close_key(loc: Loc) -> str | None:
    """The valid key an unknown key at `loc` is probably a misspelling of."""
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return None
    close = get_close_matches(loc[-1], list(model.model_fields), n=1)
    return close[0] if close else None


def _without_misspelt(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "missing" for a key that is present but misspelt: the unknown-key error says it all."""
    misspelt = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = _clean(err["loc"])
            close = _close_key(loc)
            if close is not None:
                misspelt.add(loc[:-1] + (close,))
    return [e for e in errors if not (e["type"] == "missing" and _clean(e["loc"]) in misspelt)]


def _unknown_key(loc: Loc) -> str:
    close = _close_key(loc)
    if close is not None:
        return f"unknown key; did you mean {close!r}?"
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key"
    return f"unknown key; valid keys are {', '.join(model.model_fields)}"


def _hint(loc: Loc, default: str = "a value is needed here") -> str:
    """What a key holds, from its schema field ("missing; <this>"); `default` when the field has no hint."""
    field = _field_at(loc)
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and isinstance(extra.get("missing"), str):
        return str(extra["missing"])
    return default


def _table_example(loc: Loc) -> str:
    model = _model_at(loc)
    if model is None:
        return _hint(loc, "a table { key = value, ... }")
    keys = [k for k, f in model.model_fields.items() if f.is_required()] or list(model.model_fields)[:1]
    return "{ " + ", ".join(f"{k} = ..." for k in keys) + " }"


# -- walking the schema along a key path ------------------------------------------------------------

def _flatten(tp: Any) -> list[Any]:
    """The concrete types an annotation allows: Annotated unwrapped, unions split, None dropped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _flatten(get_args(tp)[0])
    if origin in (Union, UnionType):
        return [c for a in get_args(tp) if a is not NoneType for c in _flatten(a)]
    return [tp]


def _descend(tp: Any, key: str | int) -> Any | None:
    for cand in _flatten(tp):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            if isinstance(key, str) and key in cand.model_fields:
                return cand.model_fields[key].annotation
        elif get_origin(cand) in (tuple, list) and isinstance(key, int):
            return get_args(cand)[0]
        elif get_origin(cand) is dict and isinstance(key, str):
            return get_args(cand)[1]
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model whose table `loc` names, if the schema has one there."""
    tp: Any = Config
    for key in loc:
        tp = _descend(tp, key)
        if tp is None:
            return None
    models = [c for c in _flatten(tp) if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if models else None


def _field_at(loc: Loc) -> FieldInfo | None:
    if not loc or not isinstance(loc[-1], str):
        return None
    model = _model_at(loc[:-1])
    return model.model_fields.get(loc[-1]) if model is not None else None


# -- where things are written -----------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class TomlLines:
    """The line where each key path is written in valid TOML text.

    A small scanner, not a parser: it follows ``[table]`` and ``[[array]]`` headers (numbering array
    tables per parent, as tomllib does), dotted keys, strings of every kind, multi-line arrays and
    inline tables, and records the first line of each key, array element and table. `line_of` falls
    back to the nearest enclosing path that is written (the table header for a missing key).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[Loc, int] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._arrays: dict[Loc, int] = {}
        try:
            self._document()
        except (IndexError, ValueError, tomllib.TOMLDecodeError):  # pragma: no cover - only for invalid TOML
            pass

    def line_of(self, loc: Loc) -> int | None:
        """Line of `loc`, else of its nearest written parent; None for the file as a whole."""
        for n in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return None

    def _line(self, i: int) -> int:
        return bisect_left(self._newlines, i) + 1

    def _record(self, path: Loc, line: int) -> None:
        for n in range(1, len(path)):
            self.lines.setdefault(path[:n], line)
        self.lines[path] = line

    def _skip(self, i: int, newlines: bool = False) -> int:
        text = self.text
        while i < len(text):
            c = text[i]
            if c in " \t" or (newlines and c in "\r\n"):
                i += 1
            elif c == "#":
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
            else:
                break
        return i

    def _document(self) -> None:
        text, i = self.text, 0
        table: Loc = ()
        while (i := self._skip(i, newlines=True)) < len(text):
            start = self._line(i)
            if text.startswith("[[", i):
                parts, i = self._key(i + 2)
                key = self._resolve(parts[:-1]) + (parts[-1],)
                self._arrays[key] = self._arrays.get(key, -1) + 1
                table = key + (self._arrays[key],)
                self._record(table, start)
                i = self._skip(i) + 2
            elif text[i] == "[":
                parts, i = self._key(i + 1)
                table = self._resolve(parts)
                self._record(table, start)
                i = self._skip(i) + 1
            else:
                parts, i = self._key(i)
                path = table + tuple(parts)
                self._record(path, start)
                i = self._value(self._skip(i) + 1, path)

    def _resolve(self, parts: list[str]) -> Loc:
        """A header's path, with the current index of every array of tables it passes through."""
        out: list[str | int] = []
        for part in parts:
            out.append(part)
            if tuple(out) in self._arrays:
                out.append(self._arrays[tuple(out)])
        return tuple(out)

    def _key(self, i: int) -> tuple[list[str], int]:
        text, parts = self.text, []
        while True:
            i = self._skip(i)
            if text[i] == '"':
                end = self._basic_string(i)
                parts.append(tomllib.loads(f"k = {text[i:end]}")["k"])
                i = end
            elif text[i] == "'":
                end = text.index("'", i + 1)
                parts.append(text[i + 1:end])
                i = end + 1
            else:
                m = _BARE.match(text, i)
                if m is None:
                    raise ValueError("not a key")
                parts.append(m.group())
                i = m.end()
            i = self._skip(i)
            if i < len(text) and text[i] == ".":
                i += 1
                continue
            return parts, i

    def _basic_string(self, i: int) -> int:
        """End (exclusive) of the one-line basic string starting at `i`."""
        j = i + 1
        while self.text[j] != '"':
            j += 2 if self.text[j] == "\\" else 1
        return j + 1

    def _multiline_string(self, i: int, quote: str) -> int:
        text, j = self.text, i + 3
        while True:
            if quote == '"' and text[j] == "\\":
                j += 2
            elif text.startswith(quote * 3, j):
                j += 3
                for _ in range(2):  # up to two quotes may sit right before the delimiter
                    if j < len(text) and text[j] == quote:
                        j += 1
                return j
            else:
                j += 1

    def _value(self, i: int, path: Loc) -> int:
        text = self.text
        i = self._skip(i)
        if text.startswith('"""', i) or text.startswith("'''", i):
            return self._multiline_string(i, text[i])
        if text[i] == '"':
            return self._basic_string(i)
        if text[i] == "'":
            return text.index("'", i + 1) + 1
        if text[i] == "[":
            return self._array(i + 1, path)
        if text[i] == "{":
            return self._inline_table(i + 1, path)
        while i < len(text) and text[i] not in ",]}\r\n#":
            i += 1
        return i

    def _array(self, i: int, path: Loc) -> int:
        index = 0
        while True:
            i = self._skip(i, newlines=True)
            if self.text[i] == "]":
                return i + 1
            self._record(path + (index,), self._line(i))
            i = self._skip(self._value(i, path + (index,)), newlines=True)
            if self.text[i] == ",":
                i, index = i + 1, index + 1

    def _inline_table(self, i: int, path: Loc) -> int:
        while True:
            i = self._skip(i, newlines=True)
            if self.text[i] == "}":
                return i + 1
            start = self._line(i)
            parts, i = self._key(i)
            sub = path + tuple(parts)
            self._record(sub, start)
            i = self._skip(self._value(self._skip(i) + 1, sub), newlines=True)
            if self.text[i] == ",":
                i += 1
