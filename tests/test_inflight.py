"""Limit changes in flight (gateway/inflight.py): the grid's move after a change is the
car following it, until the charger's reading shows it. Plain calls, `now` passed in."""

from __future__ import annotations

import pytest

from gateway.inflight import FOLLOW_S, Change, attribute, expired, record
from tests.allocation_helpers import charger

GRID = (16.0, 16.0, 16.0)


def moved(grid: tuple[float, ...], *pairs: tuple) -> list[tuple[float, ...]]:
    """The draws counted for (charger, change) pairs with the grid at `grid`."""
    chargers = [c for c, _ in pairs]
    changes = {c.id: ch for c, ch in pairs if ch is not None}
    return [c.draw_a for c in attribute(chargers, changes, grid, 3)]


def test_a_started_car_is_its_own_rise_in_the_grid_not_the_households():
    c = charger("a", draw_a=(0.0, 0.0, 0.0))  # its last reading predates the start
    start = Change(at=0.0, before_a=0.0, limit_a=6.0, draw_a=(0.0,) * 3, grid_a=GRID)
    assert moved((22.0,) * 3, (c, start)) == [(6.0, 6.0, 6.0)]
    assert moved((19.0,) * 3, (c, start)) == [(3.0, 3.0, 3.0)]  # not followed all the way
    # More than the change is the household's; so is a fall after a raise.
    assert moved((30.0,) * 3, (c, start)) == [(6.0, 6.0, 6.0)]
    assert moved((14.0,) * 3, (c, start)) == [(0.0, 0.0, 0.0)]
    # Not charging: nothing (its draw is 0 by the inputs' rules).
    assert moved((22.0,) * 3, (charger("a", status="SuspendedEVSE"), start)) == [(0.0,) * 3]


def test_a_newer_reading_counts_where_it_shows_more_of_the_raise():
    c = charger("a", draw_a=(9.0, 9.0, 9.0))
    raise_ = Change(at=0.0, before_a=8.0, limit_a=10.0, draw_a=(8.0,) * 3, grid_a=GRID)
    assert moved((16.5,) * 3, (c, raise_)) == [(9.0, 9.0, 9.0)]
    assert moved((18.0,) * 3, (c, raise_)) == [(10.0, 10.0, 10.0)]


def test_a_raise_of_a_car_its_limit_did_not_hold_moves_nothing():
    """Drawing 5 A on an 8 A limit: a raise to 9 A does not move it; a rise is the house's."""
    c = charger("a", draw_a=(5.0, 5.0, 5.0))
    raise_ = Change(at=0.0, before_a=8.0, limit_a=9.0, draw_a=(5.0,) * 3, grid_a=GRID)
    assert moved((20.0,) * 3, (c, raise_)) == [(5.0, 5.0, 5.0)]


def test_a_reduction_takes_the_grids_fall_never_its_rise():
    c = charger("a", draw_a=(10.0, 10.0, 10.0))
    cut = Change(at=0.0, before_a=10.0, limit_a=6.0, draw_a=(10.0,) * 3, grid_a=GRID)
    assert moved((14.0,) * 3, (c, cut)) == [(8.0, 8.0, 8.0)]
    assert moved((10.0,) * 3, (c, cut)) == [(6.0, 6.0, 6.0)]  # never below the new limit
    assert moved((18.0,) * 3, (c, cut)) == [(10.0, 10.0, 10.0)]


def test_changes_on_one_phase_share_its_move_by_their_size():
    """Two 1-phase chargers on L1 raised by 2 A and 6 A: a 4 A rise is split 1 : 3, so
    together they take the rise once, not once each."""
    a = charger("a", phases=1, draw_a=(6.0, 0.0, 0.0))
    b = charger("b", phases=1, draw_a=(0.0, 0.0, 0.0))
    up_a = Change(at=0.0, before_a=6.0, limit_a=8.0, draw_a=(6.0, 0.0, 0.0), grid_a=GRID)
    up_b = Change(at=0.0, before_a=0.0, limit_a=6.0, draw_a=(0.0, 0.0, 0.0), grid_a=GRID)
    (da, db) = moved((20.0, 16.0, 16.0), (a, up_a), (b, up_b))
    assert da[0] == pytest.approx(7.0) and db[0] == pytest.approx(3.0)
    assert da[1:] == db[1:] == (0.0, 0.0)


def test_a_change_lasts_until_a_reading_taken_a_follow_time_after_it():
    change = Change(at=100.0, before_a=0.0, limit_a=6.0, draw_a=(0.0,) * 3, grid_a=GRID)
    assert not expired(change, None, 101.0, 20.0)
    assert not expired(change, 95.0, 101.0, 20.0)  # a reading from before the change
    assert not expired(change, 100.0 + FOLLOW_S - 0.1, 106.0, 20.0)  # may not show it yet
    assert expired(change, 100.0 + FOLLOW_S, 107.0, 20.0)
    assert expired(change, 95.0, 116.0, 20.0)  # its reading is stale: nothing to add to
    assert expired(change, None, 100.0 + FOLLOW_S + 20.1, 20.0)  # the reading is overdue


def test_record_keeps_a_change_until_the_next_and_drops_phase_switches():
    a = charger("a", draw_a=(6.0, 6.0, 6.0))
    changes = record({}, [a], {"a": 6.0}, {"a": (8.0, False)}, GRID, now=10.0)
    assert changes == {"a": Change(10.0, 6.0, 8.0, (6.0, 6.0, 6.0), GRID)}
    kept = record(changes, [a], {"a": 8.0}, {"a": (8.0, False)}, (20.0,) * 3, now=11.0)
    assert kept == changes
    assert record(changes, [a], {"a": 8.0}, {"a": (0.0, True)}, GRID, now=12.0) == {}
    assert record({}, [a], {"a": 8.0}, {"a": (8.0, False)}, GRID, now=12.0) == {}
