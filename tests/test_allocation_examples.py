"""The worked examples of the allocation contract, one test each."""

from __future__ import annotations

import pytest

from tests.allocation_helpers import BATTERY, amps, charger, run, site

THREE_STANDARD = [charger("c1", priority=1), charger("c2", priority=2), charger("c3", priority=3)]


@pytest.mark.parametrize(
    ("distribution", "expected"),
    [
        ("priority", [10, 6, 0]),
        ("shared", [8, 8, 0]),
        ("strict", [16, 0, 0]),
        ("optimized", [10, 6, 0]),
    ],
)
def test_example_1_three_standard_chargers_under_each_distribution(distribution, expected):
    result = run(site(distribution=distribution), (9, 9, 9), *THREE_STANDARD)
    assert amps(result) == expected


@pytest.mark.parametrize(
    ("distribution", "expected"),
    [("shared", [8, 16]), ("priority", [8, 16]), ("strict", [8, 16]), ("optimized", [8, 16])],
)
def test_example_2_one_phase_chargers_fill_per_phase(distribution, expected):
    # Phase A has 8 A free, phase B 23 A free.
    a = charger("a", phases=1, phase_map="ABC")
    b = charger("b", phases=1, phase_map="BCA")
    result = run(site(distribution=distribution), (17, 2, 0), a, b)
    assert amps(result) == expected


@pytest.mark.parametrize("distribution", ["priority", "shared", "strict", "optimized"])
def test_example_3_surplus_is_counted_once(distribution):
    result = run(
        site(distribution=distribution),
        (-9, -9, -9),
        charger("s1", "solar", priority=1),
        charger("s2", "solar", priority=2),
    )
    assert amps(result) == [9, 0]


def test_example_4_urgency_beats_priority():
    result = run(
        site(),
        (-10, -10, -10),
        charger("std", "standard", priority=2),
        charger("sol", "solar", priority=1),
    )
    assert amps(result) == [16, 0]


def test_example_5_eco_minimum_at_night_and_surplus_by_day():
    assert amps(run(site(), (5, 5, 5), charger("e", "eco"))) == [6]
    assert amps(run(site(), (-12, -12, -12), charger("e", "eco"))) == [12]


def test_example_6_excess_on_a_one_phase_site():
    s = site(phases=1, excess_threshold_w=2300)
    result = run(s, (-18,), charger("x", "excess", phases=3, phase_map="A"))
    assert amps(result) == [8]


def test_example_7_battery_below_target():
    s = site(battery=BATTERY)
    export = (-10, -10, -10)
    assert amps(run(s, export, charger("s", "solar"), soc=75, battery_w=0)) == [0]
    assert amps(run(s, export, charger("e", "eco"), soc=75, battery_w=0)) == [6]


def test_example_8_released_suspended_ev_gives_its_share_the_same_cycle():
    s = site()
    first = charger("first", priority=1, status="SuspendedEV", draw_a=(0, 0, 0), idle_s=61)
    second = charger("second", priority=2)
    result = run(s, (9, 9, 9), first, second)
    # 16 A free: the released car gets no share until the other is served.
    assert amps(result) == [0, 16]
    still_waiting = charger("first", priority=1, status="SuspendedEV", idle_s=30)
    assert amps(run(s, (9, 9, 9), still_waiting, second)) == [10, 6]
