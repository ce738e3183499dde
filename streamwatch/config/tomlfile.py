"""Read TOML data files with errors that name the file, line and field.

`tomllib` gives no positions, so `key_lines` scans the text for table headers and `key =` lines and
maps every key path (as pydantic reports it: `("cameras", 0, "url")`) to its line. Validation errors
then point at the line of the offending key, or at the nearest enclosing table.

Every file is bounded before it is parsed: at most `MAX_FILE_BYTES`, a regular file (not a FIFO or a
device that would block a read), UTF-8, arrays and inline tables nested at most `MAX_NESTING` deep and
dotted keys of at most `MAX_KEY_PARTS` parts. So reading any file takes bounded time and memory, and
what `tomllib` and the validation walk recursively is shallow.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streamwatch.errors import DataFileError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
_SENSITIVE = re.compile(r"password|secret|token|key|url", re.IGNORECASE)

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What the nesting scan needs to see: strings and comments (each one token), bare words, brackets,
# dots and line ends; any other character is a token of its own (it ends a dotted key).
_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?"""|\'\'\'.*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*|[A-Za-z0-9_+:-]+|[^ \t\r]',
    re.DOTALL,
)

MAX_FILE_BYTES = 1024 * 1024  # a config or rules file
MAX_NESTING = 16  # arrays / inline tables inside each other
MAX_KEY_PARTS = 16  # parts of one dotted key or table header (a.b.c)


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[Loc, int]:
    """Map each key path in a TOML document to its 1-based line number."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    array_counts: dict[Loc, int] = {}
    depth = 0  # open brackets of multi-line arrays / inline tables
    in_string: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_string:
            if in_string in raw:
                in_string = None
            continue
        line = raw.split("#", 1)[0] if '"' not in raw and "'" not in raw else raw
        if depth == 0:
            header = _HEADER.match(line)
            if header:
                path = tuple(_split_key(header.group(2)))
                if header.group(1) == "[[":
                    index = array_counts.get(path, -1) + 1
                    array_counts[path] = index
                    lines.setdefault(path, number)
                    table = (*path, index)
                else:
                    table = _with_array_indices(path, array_counts)
                lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                lines.setdefault((*table, *_split_key(key.group(1))), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_string = quote
        stripped = re.sub(r'"(?:\\.|[^"\\])*"|\'[^\']*\'', "", line)
        depth = max(0, depth + stripped.count("[") + stripped.count("{") - stripped.count("]") - stripped.count("}"))
    return lines


def _with_array_indices(path: tuple[str, ...], array_counts: dict[Loc, int]) -> Loc:
    """`[cameras.vars]` after `[[cameras]]` means the vars of the latest camera."""
    result: list[str | int] = []
    for part in path:
        result.append(part)
        prefix = tuple(p for p in result)
        if prefix in array_counts:
            result.append(array_counts[prefix])
    return tuple(result)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest ancestor that has one."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def field_name(loc: Iterable[str | int]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A regular UTF-8 text file of at most `limit` bytes, or a `DataFileError` saying what is wrong
    (a decoding error names its line)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DataFileError([f"{path}: not a regular file"])
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise DataFileError([f"{path}: file not found"]) from None
    except OSError as exc:  # permissions, a symlink loop (ELOOP), a directory, ...
        raise DataFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limit:
        raise DataFileError([f"{path}: file is larger than {limit // 1024} KiB"])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark some editors write
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFileError(
            [f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"]
        ) from None


def nesting_problem(text: str) -> tuple[int, str] | None:
    """(line, message) where arrays or inline tables nest deeper than MAX_NESTING, or a dotted key
    (anywhere: a table header, a line, an inline table) has more than MAX_KEY_PARTS parts; None when
    the document is shallow enough. One linear pass; strings and comments are skipped whole."""
    depth, line, dots, after_part = 0, 1, 0, False
    for token in _TOKENS.finditer(text):
        value = token.group()
        if value == ".":
            dots = dots + 1 if after_part else 0
            after_part = False
            if dots >= MAX_KEY_PARTS:
                return line, f"a dotted key or table name has more than {MAX_KEY_PARTS} parts"
            continue
        first = value[0]
        part = first.isalnum() or first in "_+:-" or (first in "\"'" and not value.startswith(('"""', "'''")))
        if after_part or not part:  # anything but a dot between two parts starts a new key
            dots = 0
        after_part = part
        if value in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING + 1:  # +1: a table header's own bracket
                return line, f"arrays or inline tables are nested more than {MAX_NESTING} deep"
        elif value in ("]", "}"):
            depth = max(0, depth - 1)
        else:
            line += value.count("\n")
    return None


def read_toml(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Parse a TOML file; syntax errors become a `DataFileError` naming file and line."""
    text = read_text(path)
    nested = nesting_problem(text)
    if nested is not None:
        raise DataFileError([f"{path}:{nested[0]}: {nested[1]}"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{match.group(1)}" if match else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise DataFileError([f"{where}: TOML syntax error: {message}"]) from None
    return data, key_lines(text)


def substitute_env(data: Any, path: Path, lines: dict[Loc, int], loc: Loc = ()) -> Any:
    """Replace `${NAME}` in string values with environment variables; a missing one is an error."""
    if isinstance(data, dict):
        return {k: substitute_env(v, path, lines, (*loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, path, lines, (*loc, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        missing = [name for name in _ENV.findall(data) if name not in os.environ]
        if missing:
            line = line_of(lines, loc)
            raise DataFileError([f"{path}:{line}: {field_name(loc)}: environment variable {missing[0]} is not set"])
        return _ENV.sub(lambda m: os.environ[m.group(1)], data)
    return data


def validation_problems(error: ValidationError, path: Path, lines: dict[Loc, int], base: Loc = ()) -> list[str]:
    """Turn pydantic's errors into `file:line: field: message` lines."""
    found: list[tuple[int, str]] = []
    for item in error.errors(include_url=False):
        loc: Loc = (*base, *(p for p in item["loc"] if isinstance(p, (str, int))))
        line = line_of(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        found.append((line or 0, f"{where}: {field_name(loc) or '(top level)'}: {_message(item)}"))
    return [message for _line, message in sorted(found, key=lambda item: item[0])]


def _message(item: Any) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the documented keys)"
    if kind == "missing":
        return "required key is missing"
    message = str(item["msg"]).removeprefix("Value error, ")
    given = item.get("input")
    if given is None or isinstance(given, (dict, list)):
        return message
    if isinstance(given, str) and _SENSITIVE.search(" ".join(str(p) for p in item["loc"])):
        return message  # never echo what may be a secret
    return f"{message} (got {given!r})"
    return message


def load_model(model: type[M], path: Path, *, env: bool = True) -> tuple[M, dict[Loc, int]]:
    """Read, substitute and validate a TOML file as `model` (with its key lines), or raise `DataFileError`."""
    data, lines = read_toml(path)
    if env:
        data = substitute_env(data, path, lines)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise DataFileError(validation_problems(exc, path, lines)) from None


def where(path: Path, lines: dict[Loc, int], loc: Loc) -> str:
    """`file:line` of a key (or of its nearest enclosing table), `file` when the file does not say."""
    line = line_of(lines, loc)
    return f"{path}:{line}" if line else str(path)


def problem(path: Path, lines: dict[Loc, int], loc: Loc, message: str) -> str:
    """One `file:line: field: message` line."""
    return f"{where(path, lines, loc)}: {field_name(loc)}: {message}"
