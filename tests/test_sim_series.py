"""A series CSV whose `column` names the header cells to read."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.schema import SchemaError, Table
from gateway.sim.series import Series, read_series

EXPORT = (
    "time,grid_w,pv_w,note,l1,l2,l3\n06:00,-10,0,dawn,100,200,300\n07:00,-500,600,,400,200,300\n"
)


def series(tmp_path: Path, column: object, columns: list[int]):
    (tmp_path / "log.csv").write_text(EXPORT)
    t = Table({"csv": "log.csv", "column": column}, "pv")
    s = read_series(t, tmp_path, columns, "W")
    t.finish()
    return s


def test_a_named_column_is_read_and_the_other_cells_are_ignored(tmp_path: Path):
    s = series(tmp_path, "pv_w", [1])
    assert s.times == [6 * 3600, 7 * 3600]
    assert s.rows == [(0.0,), (600.0,)]


def test_one_name_per_phase(tmp_path: Path):
    s = series(tmp_path, ["l3", "l2", "l1"], [1, 3])
    assert s.rows == [(300.0, 200.0, 100.0), (300.0, 200.0, 400.0)]


@pytest.mark.parametrize(
    ("column", "path", "message"),
    [
        ("pv", "pv.column", "log.csv:1: no column 'pv' after the time in"),
        ("time", "pv.column", "log.csv:1: no column 'time' after the time in"),
        ("note", "pv.csv", "log.csv:2: not a number: 'dawn'"),
        (["l1", "l2"], "pv.column", "needs 1 column name(s) of values in W"),
        (3, "pv.column", "must be a column name or a list of them"),
    ],
)
def test_bad_columns_are_named(tmp_path: Path, column: object, path: str, message: str):
    with pytest.raises(SchemaError) as info:
        series(tmp_path, column, [1])
    assert info.value.path == path
    assert message in info.value.message


def test_reading_back_and_forth_gives_the_same_values():
    """`at` remembers the last interval (time mostly moves forward); any order is right."""
    times = [0.0, 10.0, 20.0, 30.0]
    rows = [(0.0, 0.0), (100.0, 10.0), (50.0, 5.0), (0.0, 0.0)]
    probes = [25.0, 5.0, 15.0, 15.0, 29.0, 0.5, 10.0, 20.0, 12.0]
    expected = [Series(times, rows).at(t) for t in probes]  # each from a fresh series
    walked = Series(times, rows)
    assert [walked.at(t) for t in probes] == expected
    assert expected[0] == (25.0, 2.5) and expected[6] == (100.0, 10.0)
    single = Series(times, [(r[0],) for r in rows])
    assert [single.at(t) for t in probes] == [(e[0],) for e in expected]
