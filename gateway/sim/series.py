"""Time series for the simulator: inline points or a CSV file, any step size, interpolated.

A time is seconds from midnight of the simulated day. It is written as a number of
seconds, as "HH:MM" or "HH:MM:SS" (hours may exceed 24 for the next day), as a TOML
local time (09:30:00), or in a CSV also as an ISO date-time (seconds from midnight of
the first row's date).
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.schema import SchemaError, Table, as_number


class TimeError(ValueError):
    pass


def parse_time(value: Any) -> float:
    """Seconds from midnight; raises `TimeError` with a message for the user."""
    if isinstance(value, bool):
        raise TimeError(f"must be a time (seconds or HH:MM[:SS]), not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    if isinstance(value, str):
        parts = value.strip().split(":")
        if 2 <= len(parts) <= 3:
            try:
                numbers = [float(p) for p in parts]
            except ValueError:
                numbers = []
            if numbers and all(n >= 0 for n in numbers) and all(n < 60 for n in numbers[1:]):
                return numbers[0] * 3600 + numbers[1] * 60 + (numbers[2] if len(numbers) > 2 else 0)
    raise TimeError(f"must be a time (seconds or HH:MM[:SS]), not {value!r}")


def read_time(t: Table, key: str, default: Any = None) -> float:
    value = t.raw(key, default)
    if value is None:
        raise SchemaError(t.at(key), "is required")
    try:
        return parse_time(value)
    except TimeError as exc:
        raise SchemaError(t.at(key), str(exc)) from None


# A stretch of a series: start, end, left row, change per column or None, length.
_Span = tuple[float, float, tuple[float, ...], tuple[float, ...] | None, float]


@dataclass(slots=True)
class Series:
    """Values (one or more columns) at increasing times, read at any time in between."""

    times: list[float]
    rows: list[tuple[float, ...]]
    step: bool = False  # hold each value until the next point instead of interpolating
    # The last stretch read: time moves forward, so the next read is mostly in it too.
    # Its start and end (exclusive: a read on a point looks afresh), its left row, the
    # change over it per column and its length (worked out once, the same operations as
    # from the points each time); the change is None where the row holds all along it
    # (before the first point, after the last, in a step series).
    _span: _Span = field(default=(0.0, 0.0, (), None, 0.0), compare=False, repr=False)

    def at(self, t: float) -> tuple[float, ...]:
        t0, t1, left, change, length = self._span
        if not t0 < t < t1:
            t0, t1, left, change, length = self._span = self._find(t)
        if change is None:
            return left
        f = (t - t0) / length
        if len(left) == 1:
            return (left[0] + change[0] * f,)
        return tuple([a + d * f for a, d in zip(left, change, strict=True)])

    def _find(self, t: float) -> _Span:
        """The stretch `t` is in (see `_span`)."""
        times, rows = self.times, self.rows
        if t <= times[0]:
            return (-math.inf, times[0], rows[0], None, 0.0)
        if t >= times[-1]:
            return (times[-1], math.inf, rows[-1], None, 0.0)
        i = bisect.bisect_right(times, t)
        t0, t1, left = times[i - 1], times[i], rows[i - 1]
        if self.step:
            return (t0, t1, left, None, 0.0)
        change = tuple([b - a for a, b in zip(left, rows[i], strict=True)])
        return (t0, t1, left, change, t1 - t0)


def read_series(t: Table, base_dir: Path, columns: Sequence[int], unit: str) -> Series:
    """A series table: `points = [[time, value...], ...]` or `csv = "file.csv"` (with
    `column` naming the header cells to read; else every cell after the time), and
    `interpolation = "linear" | "step"`; each row has one of `columns` values."""
    step = t.choice("interpolation", ["linear", "step"], "linear") == "step"
    has_points, has_csv = t.has("points"), t.has("csv")
    if has_points == has_csv:
        raise SchemaError(t.path, "needs exactly one of points or csv")
    if has_points:
        times, rows = _inline_points(t, columns, unit)
    else:
        times, rows = _csv_points(t, base_dir, columns, unit)
    return Series(times, rows, step)


def _check_row(values: list[float], columns: Sequence[int], unit: str) -> str | None:
    if len(values) not in columns:
        want = " or ".join(str(n) for n in columns)
        return f"needs a time and {want} value(s) in {unit}, not {len(values)}"
    return None


def _inline_points(
    t: Table, columns: Sequence[int], unit: str
) -> tuple[list[float], list[tuple[float, ...]]]:
    raw = t.raw("points")
    path = t.at("points")
    if not isinstance(raw, list) or not raw:
        raise SchemaError(path, "must be a non-empty list of [time, value...] rows")
    times: list[float] = []
    rows: list[tuple[float, ...]] = []
    for i, row in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(row, list) or not row:
            raise SchemaError(where, "must be a [time, value...] row")
        try:
            when = parse_time(row[0])
        except TimeError as exc:
            raise SchemaError(where, str(exc)) from None
        values = [as_number(v, f"{where}[{j + 1}]") for j, v in enumerate(row[1:])]
        problem = _check_row(values, columns, unit) or _order(times, when)
        if problem:
            raise SchemaError(where, problem)
        times.append(when)
        rows.append(tuple(values))
    _same_width(rows, path)
    return times, rows


def _order(times: list[float], when: float) -> str | None:
    if times and when <= times[-1]:
        return "times must increase"
    return None


def _same_width(rows: list[tuple[float, ...]], where: str) -> None:
    if len({len(r) for r in rows}) > 1:
        raise SchemaError(where, "every row needs the same number of values")


def _csv_points(
    t: Table, base_dir: Path, columns: Sequence[int], unit: str
) -> tuple[list[float], list[tuple[float, ...]]]:
    name = t.string("csv")
    path = base_dir / name
    key = t.at("csv")
    names = _column_names(t, columns, unit)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except OSError as exc:
        raise SchemaError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    picked: list[int] | None = None  # the cells to read, when `column` names them
    times: list[float] = []
    rows: list[tuple[float, ...]] = []
    day: dt.date | None = None
    for number, cells in enumerate(lines, start=1):
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if names is not None and picked is None:
            picked = _header(cells, names, t.at("column"), f"{path}:{number}")
            continue
        try:
            when, day = _csv_time(cells[0], day)
            if picked is not None:
                if len(cells) <= max(picked):
                    raise ValueError(f"has {len(cells)} cells, the header {max(picked) + 1}")
                cells = [cells[0], *(cells[i] for i in picked)]
            values = [_number(c) for c in cells[1:]]
        except ValueError as exc:
            if number == 1 and not times:
                continue  # a header row
            raise SchemaError(key, f"{path}:{number}: {exc}") from None
        problem = _check_row(values, columns, unit) or _order(times, when)
        if problem:
            raise SchemaError(key, f"{path}:{number}: {problem}")
        times.append(when)
        rows.append(tuple(values))
    if not rows:
        raise SchemaError(key, f"{path}: no data rows")
    _same_width(rows, f"{key}: {path}")
    return times, rows


def _column_names(t: Table, columns: Sequence[int], unit: str) -> list[str] | None:
    """`column = "name"` (or one name per value, e.g. per phase): the header cells to read."""
    raw = t.raw("column", None)
    if raw is None:
        return None
    names = [raw] if isinstance(raw, str) else raw
    where = t.at("column")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SchemaError(where, "must be a column name or a list of them")
    if len(names) not in columns:
        want = " or ".join(str(n) for n in columns)
        raise SchemaError(where, f"needs {want} column name(s) of values in {unit}")
    return names


def _header(cells: list[str], names: list[str], where: str, at: str) -> list[int]:
    """The positions of `names` in the header row `cells`."""
    for n in names:
        if n not in cells[1:]:
            raise SchemaError(where, f"{at}: no column {n!r} after the time in {cells}")
    return [cells.index(n, 1) for n in names]


def _csv_time(cell: str, day: dt.date | None) -> tuple[float, dt.date | None]:
    if "T" in cell or (len(cell) > 10 and cell[4] == "-"):
        try:
            stamp = dt.datetime.fromisoformat(cell)
        except ValueError:
            raise ValueError(f"not a time: {cell!r}") from None
        day = day or stamp.date()
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=stamp.tzinfo)
        return (stamp - midnight).total_seconds(), day
    try:
        return parse_time(float(cell) if _is_number(cell) else cell), day
    except TimeError:
        raise ValueError(f"not a time: {cell!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
