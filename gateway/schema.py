"""Strict, path-tracking reading of parsed JSON/TOML data.

Every public input (the `allocate` snapshot, the TOML config, simulator scenarios) is
read through `Table`, so every error names the exact field (`chargers[1].max_a`) and
unknown keys are errors rather than silently ignored typos.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


class SchemaError(ValueError):
    """A bad field: `path` is the dotted/indexed location, `message` what is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class SchemaErrors(ValueError):
    """Several bad fields found in one read (`check-config` reports them all)."""

    def __init__(self, errors: Sequence[SchemaError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = tuple(errors)


def _nearest(key: str, candidates: list[str]) -> str | None:
    """The candidate `key` is most likely a typo of, if any."""
    import difflib  # only on an error: every command reads a schema, few make one

    near = difflib.get_close_matches(key, candidates, 1, cutoff=0.8)
    return near[0] if near else None


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def as_number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(path, f"must be a number, not {_type_name(value)}")
    if not math.isfinite(value):
        raise SchemaError(path, "must be a finite number")
    return float(value)


def check_range(value: float, path: str, lo: float | None, hi: float | None) -> float:
    if lo is not None and value < lo:
        raise SchemaError(path, f"must be >= {lo:g}")
    if hi is not None and value > hi:
        raise SchemaError(path, f"must be <= {hi:g}")
    return value


class Table:
    """One mapping being read key by key; `finish()` rejects every key nobody read."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise SchemaError(path or "(top level)", f"must be a table, not {_type_name(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self._read: set[str] = set()

    def at(self, key: str | int) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key not in self.data:
            if default is _MISSING:
                typo = _nearest(key, list(self.data))
                if typo is not None and typo not in self._read:
                    raise SchemaError(self.at(typo), f"unknown key; did you mean {key}?")
                raise SchemaError(self.at(key), "is required")
            return default
        return self.data[key]

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        return check_range(as_number(value, self.at(key)), self.at(key), lo, hi)

    def integer(
        self, key: str, default: Any = _MISSING, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise SchemaError(self.at(key), f"must be a whole number, not {value!r}")
        check_range(value, self.at(key), lo, hi)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        if not isinstance(value, bool):
            raise SchemaError(self.at(key), f"must be true or false, not {value!r}")
        return value

    def string(self, key: str, default: Any = _MISSING, *, nonempty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        if not isinstance(value, str):
            raise SchemaError(self.at(key), f"must be a string, not {_type_name(value)}")
        if nonempty and not value.strip():
            raise SchemaError(self.at(key), "must not be empty")
        return value

    def choice(self, key: str, options: Sequence[str], default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if value is default and default is not _MISSING:
            return default
        if value not in options:
            raise SchemaError(self.at(key), f"must be one of {', '.join(options)}; got {value!r}")
        return value

    def numbers(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lengths: Sequence[int] | None = None,
        lo: float | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        path = self.at(key)
        if not isinstance(value, list):
            raise SchemaError(path, f"must be a list of numbers, not {_type_name(value)}")
        if lengths is not None and len(value) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise SchemaError(path, f"must have {want} entries, not {len(value)}")
        return tuple(
            check_range(as_number(v, join(path, i)), join(path, i), lo, None)
            for i, v in enumerate(value)
        )

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        path = self.at(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SchemaError(path, "must be a list of strings")
        return tuple(value)

    def table(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        return Table(value, self.at(key))

    def tables(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return default
        path = self.at(key)
        if not isinstance(value, list):
            raise SchemaError(path, f"must be a list of tables, not {_type_name(value)}")
        return [Table(v, join(path, i)) for i, v in enumerate(value)]

    def each(self, key: str, read: Callable[[Table], T], default: Any = _MISSING) -> Any:
        """Read a list of tables with `read`, finishing each one."""
        tables = self.tables(key, default)
        if tables is default and default is not _MISSING:
            return default
        out = []
        for t in tables:
            out.append(read(t))
            t.finish()
        return tuple(out)

    def finish(self) -> None:
        for key in self.data:
            if key not in self._read:
                near = _nearest(key, sorted(self._read))
                hint = f"; did you mean {near}?" if near is not None else ""
                raise SchemaError(self.at(key), f"unknown key{hint}")
