"""Issue #13's rules, each on a small site where the answer is plain: the battery policy
in the allocation, Excess after every other car, and net metering."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.allocation.controller import Controller
from gateway.allocation.snapshot import read_site
from gateway.allocation.timing import ControlSettings
from gateway.model import Battery, Measurements, Metering, Mode, Reason, Snapshot
from gateway.schema import SchemaError, Table
from tests.allocation_helpers import amps, charger, run, site
from tests.test_controller import NONE as NO_TIMERS

BATTERY = Battery(max_charge_w=5000, max_discharge_w=5000, soc_min=20, soc_target=80)


# -- battery policy: Solar and Excess run on the sun ---------------------------------


def test_battery_discharge_into_a_solar_car_is_not_surplus():
    s = site(battery=BATTERY)
    # The car draws 9 A (6210 W); the grid reads 0 because the battery gives 4830 W:
    # the sun gives 1380 W = 2 A per phase, too little for the 6 A minimum.
    solar = charger("s", "solar", draw_a=(9, 9, 9))
    result = run(s, (0, 0, 0), solar, soc=95, battery_w=4830)
    assert amps(result) == [0]
    assert result.by_id["s"].reason is Reason.NO_SURPLUS
    # The same with the battery idle: the car's 9 A are the sun's.
    assert amps(run(s, (0, 0, 0), solar, soc=95, battery_w=0)) == [9]


def test_the_owners_assist_lets_a_solar_car_use_the_battery_up_to_its_power():
    assisted = BATTERY._replace(assist_soc=85, assist_w=230 * 3 * 4)  # 4 A per phase
    s = site(battery=assisted)
    solar = charger("s", "solar", draw_a=(9, 9, 9))
    # Sun 2 A + assist 4 A = 6 A: the car keeps its minimum through the dip.
    assert amps(run(s, (0, 0, 0), solar, soc=90, battery_w=4830)) == [6]
    assert amps(run(s, (0, 0, 0), solar, soc=84, battery_w=4830)) == [0]  # below assist_soc
    excess = charger("x", "excess", draw_a=(9, 9, 9))
    sx = site(battery=assisted, excess_threshold_w=0)
    assert amps(run(sx, (0, 0, 0), excess, soc=90, battery_w=4830)) == [6]


def test_battery_charge_above_target_stays_redirectable_surplus():
    s = site(battery=BATTERY)
    solar = charger("s", "solar", max_a=32)
    assert amps(run(s, (0, 0, 0), solar, soc=85, battery_w=-4140)) == [6]


# -- battery policy: Eco's minimum and soc_min ------------------------------------------


def test_eco_minimum_waits_below_soc_min_while_the_battery_would_feed_it():
    s = site(battery=BATTERY)
    eco = charger("e", "eco")
    # The battery covers the house (grid 0, 1 kW out): a start would come from it too.
    result = run(s, (0, 0, 0), eco, soc=15, battery_w=1000)
    assert amps(result) == [0]
    assert result.by_id["e"].reason is Reason.BATTERY_BELOW_MIN
    # Charging from the sun it would swing to discharge for the car as well.
    assert amps(run(s, (0, 0, 0), eco, soc=15, battery_w=-500)) == [0]
    # At its own reserve (idle while the site imports) the grid feeds the minimum.
    assert amps(run(s, (3, 3, 3), eco, soc=15, battery_w=0)) == [6]
    # Above soc_min Eco may use it (supply_modes has eco by default).
    assert amps(run(s, (0, 0, 0), eco, soc=25, battery_w=1000)) == [6]


def test_a_battery_the_gateway_holds_does_not_make_eco_or_standard_wait():
    # With a battery hold (a battery meter with control = true) the hold caps the
    # discharge once the car charges, so the car charges from the grid instead of waiting.
    held = site(battery=BATTERY._replace(supply_modes=frozenset(), held=True))
    # Eco gets its minimum, Standard its maximum, from the grid once the hold caps it.
    for mode, expected in (("eco", [6]), ("standard", [16])):
        assert amps(run(held, (0, 0, 0), charger("e", mode), soc=15, battery_w=1000)) == expected
    unheld = site(battery=BATTERY._replace(supply_modes=frozenset()))
    assert amps(run(unheld, (0, 0, 0), charger("e", "eco"), soc=15, battery_w=1000)) == [0]


def test_eco_left_out_of_supply_modes_waits_with_its_own_reason():
    s = site(battery=BATTERY._replace(supply_modes=frozenset({Mode.STANDARD})))
    result = run(s, (0, 0, 0), charger("e", "eco"), soc=90, battery_w=1000)
    assert amps(result) == [0]
    assert result.by_id["e"].reason is Reason.BATTERY_WOULD_DISCHARGE
    # With the sun carrying the minimum it runs (on the sun only).
    assert amps(run(s, (-7, -7, -7), charger("e", "eco"), soc=90, battery_w=0)) == [7]


def test_standard_counts_on_the_battery_only_while_the_policy_allows():
    s = site(breaker=10, phases=1, battery=Battery(max_charge_w=0, max_discharge_w=2300))
    c = charger("c", max_a=32, phases=1, phase_map="A")
    assert amps(run(s, (4,), c, soc=50, battery_w=0)) == [16]
    only_eco = site(
        breaker=10,
        phases=1,
        battery=Battery(0, 2300, supply_modes=frozenset({Mode.ECO})),
    )
    assert amps(run(only_eco, (4,), c, soc=50, battery_w=0)) == [16]  # eco may: room counts
    none = site(breaker=10, phases=1, battery=Battery(0, 2300, supply_modes=frozenset()))
    assert amps(run(none, (4,), c, soc=50, battery_w=0)) == [6]


# -- Excess: what is left after every other car ------------------------------------------


@pytest.mark.parametrize("distribution", ["priority", "shared", "strict", "optimized"])
def test_excess_is_what_the_site_exports_after_every_other_car(distribution):
    s = site(breaker=32, excess_threshold_w=2500, distribution=distribution)
    standard = charger("std", max_a=16, draw_a=(10, 10, 10))
    van = charger("van", "excess", phases=1, phase_map="A", max_a=32)
    # Export 8 A per phase while the Standard car draws 10: the house exports 18 A per
    # phase, but once the Standard car has its 16 A only 2 A per phase are left.
    result = run(s, (-8, -8, -8), standard, van)
    assert amps(result) == [16, 0]
    assert result.by_id["van"].reason is Reason.NO_EXCESS
    # The demo at 12:48: the site imports; the van gets nothing.
    assert amps(run(s, (4, 10, 10), standard, van)) == [16, 0]


def test_an_excess_car_never_gets_more_than_the_site_still_exports():
    # Export 3450 W over the threshold of 2500 W, but its minimum (6 A on 3 phases,
    # 4140 W) would import: 0. With 4140 W exported it starts at its minimum.
    s = site(excess_threshold_w=2500)
    van = charger("van", "excess")
    assert amps(run(s, (-5, -5, -5), van)) == [0]
    assert amps(run(s, (-6, -6, -6), van)) == [6]


# -- net metering ---------------------------------------------------------------------------


def test_net_metering_gives_a_one_phase_car_the_sum_over_the_phases():
    one_phase = charger("s", "solar", phases=1, phase_map="A", max_a=32)
    export = (-4, -4, -4)
    assert amps(run(site(), export, one_phase)) == [0]  # a third: 4 A
    assert amps(run(site(metering=Metering.NET), export, one_phase)) == [12]
    # Import on one phase is paid by export on the others.
    assert amps(run(site(metering=Metering.NET), (2, -6, -6), one_phase)) == [10]
    # The breaker stays per phase: 25 A, of which the house takes 16 on A.
    assert amps(run(site(metering=Metering.NET), (16, -30, -30), one_phase)) == [9]


def test_net_metering_excess_is_the_sum_too():
    van = charger("van", "excess", phases=1, phase_map="B", max_a=32)
    s = site(metering=Metering.NET, excess_threshold_w=0)
    assert amps(run(s, (-3, -3, -3), van)) == [9]
    assert amps(run(site(excess_threshold_w=0), (-3, -3, -3), van)) == [0]  # 3 A < 6 A


def test_metering_is_read_and_checked():
    base = {"main_breaker_a": 25}
    assert read_site(Table(base, "site")).metering is Metering.PER_PHASE
    assert read_site(Table({**base, "metering": "net"}, "site")).metering is Metering.NET
    with pytest.raises(SchemaError, match=r"site\.metering"):
        read_site(Table({**base, "metering": "sum"}, "site"))


# -- the controller's holds do not run on the battery -----------------------------------


# The controller tests' "every rule off", with the stop delay on.
NONE = replace(NO_TIMERS, stop_delay_s=180)


def _step(controller, state, s, grid, now, battery_w, soc, *chargers):
    m = Measurements(grid_current_a=grid, battery_soc=soc, battery_power_w=battery_w)
    return controller.step(state, Snapshot(s, m, chargers), now, 1.0)


def test_a_solar_stop_delay_holds_from_the_grid_but_not_from_the_battery():
    controller = Controller(ControlSettings(timing=NONE))
    solar = charger("s", "solar")
    no_battery = site()
    state = controller.initial_state()
    state, d = _step(controller, state, no_battery, (-9, -9, -9), -1, None, None, solar)
    state, d = _step(controller, state, no_battery, (-9, -9, -9), 0, None, None, solar)
    assert d.commands[0].limit_a == 9.0
    drawing = solar._replace(draw_a=(9, 9, 9))
    # A cloud: the grid imports 5 A for the car; the stop delay holds the minimum.
    state, d = _step(controller, state, no_battery, (5, 5, 5), 1, None, None, drawing)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.STOP_DELAY)

    with_battery = site(battery=BATTERY)
    state = controller.initial_state()
    state, d = _step(controller, state, with_battery, (-9, -9, -9), -1, 0.0, 90, solar)
    state, d = _step(controller, state, with_battery, (-9, -9, -9), 0, 0.0, 90, solar)
    assert d.commands[0].limit_a == 9.0
    # The same cloud, but the battery covers the car (grid 0, 3450 W out): stop now.
    state, d = _step(controller, state, with_battery, (0, 0, 0), 1, 3450.0, 90, drawing)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (0.0, Reason.BATTERY_WOULD_DISCHARGE)
    assert d.commands[0].detail == "solar: stopped, the battery would discharge for it"


def test_a_standard_car_on_the_battery_does_not_stop_a_solar_car_s_stop_delay():
    controller = Controller(ControlSettings(timing=NONE))
    s = site(breaker=63, battery=BATTERY)
    solar = charger("s", "solar", priority=2)
    standard = charger("std", min_a=10, max_a=10, priority=1, draw_a=(10, 10, 10))
    state = controller.initial_state()
    # The sun gives 19 A per phase beyond the house: 10 for the Standard car, 9 left.
    for now in (-1, 0):
        state, d = _step(controller, state, s, (-9, -9, -9), now, 0.0, 90, solar, standard)
    assert [c.limit_a for c in d.commands] == [9.0, 10.0]
    # The sun falls to 5 A per phase: the cars' 19 A draw 9660 W more than it gives; the
    # battery gives 3 kW of it (the Standard car's: the policy allows that) and the grid
    # the rest (9.65 A per phase). The stop delay holds the Solar car's minimum.
    drawing = solar._replace(draw_a=(9, 9, 9))
    grid = (9.65, 9.65, 9.65)
    state, d = _step(controller, state, s, grid, 1, 3000.0, 90, drawing, standard)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.STOP_DELAY)


@pytest.mark.parametrize("mode", ["solar", "eco"])
def test_a_reduction_within_the_dead_band_is_not_held_on_the_battery(mode):
    """A car on the sun (Solar; Eco above its minimum) takes exactly the surplus: with net
    metering (or a battery that follows the load) what the dead band would hold back
    comes from the battery. The demo's Solar car took 0.14 kWh so (issue #15)."""
    controller = Controller(ControlSettings(timing=replace(NO_TIMERS, dead_band_a=0.5)))
    s = site(metering=Metering.NET, battery=BATTERY)
    car = charger("s", mode)
    state = controller.initial_state()
    for now in (-1, 0):
        state, d = _step(controller, state, s, (-7, -7, -7), now, 0.0, 90, car)
    assert d.commands[0].limit_a == 7.0
    drawing = car._replace(draw_a=(7, 7, 7))
    # The sun falls by 140 W, 0.2 A per phase: the grid gives it, the dead band holds.
    _, d = _step(controller, state, s, (0.2, 0.2, 0.2), 1, 0.0, 90, drawing)
    assert d.commands[0].limit_a == 7.0
    # The same dip, covered by the battery (grid 0, 140 W out): the sun carries 6.7 A,
    # and the cut goes half a dead band further, to 6.4 A, at once.
    state, d = _step(controller, state, s, (0, 0, 0), 1, 140.0, 90, drawing)
    assert d.commands[0].limit_a == 6.4
    # The battery now takes the 0.3 A per phase the car leaves: no rise straight back.
    drawing = car._replace(draw_a=(6.4, 6.4, 6.4))
    _, d = _step(controller, state, s, (0, 0, 0), 2, -207.0, 90, drawing)
    assert d.commands[0].limit_a == 6.4


def test_standard_waits_below_soc_min_while_the_battery_would_feed_it():
    s = site(battery=BATTERY)
    result = run(s, (0, 0, 0), charger("c", max_a=16), soc=15, battery_w=1000)
    assert amps(result) == [0]
    assert result.by_id["c"].reason is Reason.BATTERY_BELOW_MIN
    # The battery at its own reserve (or held): the grid feeds it, up to its max.
    assert amps(run(s, (3, 3, 3), charger("c", max_a=16), soc=15, battery_w=0)) == [16]
    # The sun's surplus it may take even so.
    assert amps(run(s, (-8, -8, -8), charger("c", max_a=16), soc=15, battery_w=0)) == [8]
    assert amps(run(s, (0, 0, 0), charger("c", max_a=16), soc=15, battery_w=-2070)) == [0]
