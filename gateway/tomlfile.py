"""TOML files whose errors name the file, the line and the key.

tomllib gives no positions, so `KeyLines` scans the source for table headers and
`key =` lines and maps a schema path (`chargers[1].max_a`) back to a line. Inline
tables and arrays are located at the line of the key that holds them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.schema import SchemaError, SchemaErrors, Table

T = TypeVar("T")

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class TomlError(Exception):
    """Bad input file: str() is `FILE:LINE: KEY: MESSAGE` (line omitted if unknown)."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)
        self.file, self.line, self.key, self.message = file, line, key, message


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in text.split("."))


class TomlErrors(TomlError):
    """Several errors in one file; str() is the first, `errors` has them all in order."""

    def __init__(self, errors: list[TomlError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.line, first.key, first.message)
        self.errors = errors


class KeyLines:
    """Map from key paths to the line they are written on."""

    def __init__(self, source: str) -> None:
        self._lines: dict[tuple[str | int, ...], int] = {}
        table: tuple[str | int, ...] = ()
        array_counts: dict[tuple[str | int, ...], int] = {}
        in_multiline = False
        for number, line in enumerate(source.splitlines(), start=1):
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = not in_multiline
                if not in_multiline:
                    continue
            if in_multiline:
                continue
            header = _HEADER.match(line)
            if header:
                names = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    # The array itself is not an enclosing one: the second [[a]] is a[1].
                    parts = (*self._resolve(names[:-1], array_counts), names[-1])
                    index = array_counts.get(parts, -1) + 1
                    array_counts[parts] = index
                    table = (*parts, index)
                else:
                    table = self._resolve(names, array_counts)
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key and not line.lstrip().startswith("#"):
                self._lines.setdefault((*table, *_split_dotted(key.group(1))), number)

    @staticmethod
    def _resolve(
        parts: tuple[str, ...], counts: dict[tuple[str | int, ...], int]
    ) -> tuple[str | int, ...]:
        """Insert the current index of every enclosing array of tables ([[a]] then [a.b])."""
        out: tuple[str | int, ...] = ()
        for part in parts:
            out = (*out, part)
            if out in counts:
                out = (*out, counts[out])
        return out

    def line_of(self, path: str) -> int | None:
        parts: tuple[str | int, ...] = tuple(
            int(index) if index else name for name, index in _PATH_PART.findall(path)
        )
        while parts:
            if parts in self._lines:
                return self._lines[parts]
            parts = parts[:-1]
        return None


def _read_source(path: str | Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TomlError(str(path), None, "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TomlError(
            str(path), line, "", f"not UTF-8 (byte 0x{raw[exc.start]:02x}): save it as UTF-8"
        ) from exc


def error_at(path: str | Path, exc: SchemaError) -> TomlError:
    """A schema error found after reading, located in the file it came from."""
    return TomlError(
        str(path), KeyLines(_read_source(path)).line_of(exc.path), exc.path, exc.message
    )


def read_toml(path: str | Path, read: Callable[[Table], T]) -> T:
    """Parse `path` and read it with `read`; every failure becomes a `TomlError`."""
    name = str(path)
    source = _read_source(path)
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise TomlError(name, line, "", f"not valid TOML: {getattr(exc, 'msg', exc)}") from exc
    try:
        table = Table(data)
        result = read(table)
        table.finish()
    except SchemaError as exc:
        raise TomlError(name, KeyLines(source).line_of(exc.path), exc.path, exc.message) from exc
    except SchemaErrors as exc:
        lines = KeyLines(source)
        found = [TomlError(name, lines.line_of(e.path), e.path, e.message) for e in exc.errors]
        found.sort(key=lambda e: e.line or 0)
        raise TomlErrors(found) from exc
    return result
