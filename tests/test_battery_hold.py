"""The battery hold's decision (pure): which limit, and when it is written; and the
same rule in `simulate`."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.allocation.battery import allowance_w
from gateway.allocation.hold import BAND_W, RETRY_S, Written, due, hold_limit
from gateway.model import Battery, Mode
from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import simulate
from tests.conftest import ROOT

NO_SUPPLY = Battery(max_charge_w=5000, max_discharge_w=5000, soc_min=20, supply_modes=frozenset())
DEFAULT = Battery(max_charge_w=5000, max_discharge_w=5000, soc_min=20)
ASSIST = Battery(
    max_charge_w=5000, max_discharge_w=5000, soc_min=20, assist_soc=60, assist_w=800
)


def test_no_car_no_hold() -> None:
    assert hold_limit(NO_SUPPLY, 90, [], failsafe=False) is None


def test_an_eco_car_the_policy_does_not_supply_holds_the_battery_at_zero() -> None:
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], failsafe=False) == 0.0


def test_a_supplied_mode_above_soc_min_releases_and_below_it_holds() -> None:
    assert hold_limit(DEFAULT, 50, [Mode.ECO], failsafe=False) is None
    assert hold_limit(DEFAULT, 19, [Mode.ECO], failsafe=False) == 0.0


def test_the_smallest_allowance_over_the_charging_cars_wins() -> None:
    # Solar with assist at 70 %: 800 W; with a Standard car beside it the Solar car's
    # figure still bounds the battery (it would otherwise feed both).
    assert hold_limit(ASSIST, 70, [Mode.SOLAR], failsafe=False) == 800.0
    assert hold_limit(ASSIST, 70, [Mode.STANDARD, Mode.SOLAR], failsafe=False) == 800.0
    assert hold_limit(ASSIST, 50, [Mode.STANDARD, Mode.SOLAR], failsafe=False) == 0.0


def test_an_allowance_at_the_battery_s_own_maximum_is_no_hold() -> None:
    big = Battery(5000, 800, soc_min=20, assist_soc=60, assist_w=800)
    assert hold_limit(big, 70, [Mode.SOLAR], failsafe=False) is None


def test_a_held_battery_still_covers_the_house_beyond_its_pv() -> None:
    # The house draws 600 W beyond the sun: the battery keeps giving that, the car nothing.
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], False, house_w=600.0) == 600.0
    assert hold_limit(ASSIST, 70, [Mode.SOLAR], False, house_w=600.0) == 1400.0
    # Exporting (PV beyond the house) or an unknown grid reading: only the car's share.
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], False, house_w=-900.0) == 0.0
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], False, house_w=float("nan")) == 0.0
    # Never above what the battery can give.
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], False, house_w=7000.0) == 5000.0


def test_failsafe_or_no_battery_releases() -> None:
    assert hold_limit(NO_SUPPLY, 90, [Mode.ECO], failsafe=True) is None
    assert hold_limit(None, 90, [Mode.ECO], failsafe=False) is None


def test_unknown_soc_holds_a_car_mode_that_needs_the_battery_to_report() -> None:
    assert hold_limit(DEFAULT, None, [Mode.STANDARD], failsafe=False) == 0.0


def test_first_decision_is_always_written_even_a_release() -> None:
    assert due(None, None, 0.0, rewrite_s=30)
    assert due(None, 0.0, 0.0, rewrite_s=30)


def test_a_change_is_written_at_once_a_hold_is_rewritten_a_release_is_not() -> None:
    held = Written(0.0, at=100.0, ok=True)
    assert not due(held, 0.0, 129.9, rewrite_s=30)
    assert due(held, 0.0, 130.0, rewrite_s=30)
    assert due(held, None, 100.1, rewrite_s=30)
    assert due(held, 800.0, 100.1, rewrite_s=30)
    # The house wanders: a held limit follows it only beyond the band.
    assert not due(held, BAND_W - 1, 100.1, rewrite_s=30)
    assert due(held, BAND_W, 100.1, rewrite_s=30)
    released = Written(None, at=100.0, ok=True)
    assert not due(released, None, 10_000.0, rewrite_s=30)


def test_a_failed_write_is_retried_after_the_retry_time_whatever_is_wanted() -> None:
    failed = Written(0.0, at=100.0, ok=False)
    assert not due(failed, 0.0, 100.0 + RETRY_S - 0.1, rewrite_s=30)
    assert not due(failed, None, 100.0 + RETRY_S - 0.1, rewrite_s=30)
    assert due(failed, None, 100.0 + RETRY_S, rewrite_s=30)


@given(
    st.lists(st.sampled_from(list(Mode)), max_size=4),
    st.one_of(st.none(), st.floats(0, 100)),
    st.booleans(),
    st.floats(-10_000, 10_000),
)
def test_a_hold_never_gives_cars_more_than_the_smallest_allowance(modes, soc, failsafe, house):
    limit = hold_limit(ASSIST, soc, modes, failsafe, house)
    if failsafe or not modes:
        assert limit is None
        return
    lowest = min(allowance_w(ASSIST, m, soc) for m in modes)
    if limit is None:
        assert lowest >= ASSIST.max_discharge_w
    else:
        assert lowest < ASSIST.max_discharge_w
        # What is left for the cars once the house is covered is their allowance at most.
        assert limit - max(0.0, house) <= lowest
        assert limit == min(max(0.0, house) + lowest, ASSIST.max_discharge_w)


def test_simulated_night_eco_car_leaves_the_battery_where_it_would_be_without_the_car() -> None:
    """The shipped scenario (figures in docs/simulation.md): hold on ends the night at the
    no-car baseline, hold off drains the battery into the car down to its reserve."""
    scenario = load_scenario(ROOT / "gateway/sim/scenarios/evening-eco-hold.toml")
    assert scenario.battery is not None and scenario.battery.controlled

    def end_soc(s) -> float:
        result = simulate(s, trace=True)
        assert result.trace is not None
        return result.trace.battery_soc[-1]

    held = end_soc(scenario)
    baseline = end_soc(replace(scenario, sessions=()))
    drained = end_soc(replace(scenario, battery=replace(scenario.battery, controlled=False)))
    assert held == pytest.approx(baseline, abs=0.5)
    assert baseline > 20
    assert drained == pytest.approx(scenario.battery.reserve_soc, abs=0.1)
