"""Issue #13 over whole days: every shipped scenario (and the demo's day) is simulated once
and held to the owner's energy rules, with the simulated site's physics as the oracle
(where each car's energy came from is the tally's, from PV, battery and grid power, not
from the allocator's model)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from gateway.model import Metering, Mode
from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import Result, simulate

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "gateway" / "sim" / "scenarios").glob("*.toml"))
DAYS = [*SCENARIOS, ROOT / "gateway" / "sim" / "demo" / "site.toml"]
IDS = [p.stem if p.parent.name == "scenarios" else "demo" for p in DAYS]
SUN_MODES = (Mode.SOLAR, Mode.EXCESS)

# The bounds stated by the issue: a Solar/Excess car takes no battery energy (the
# tolerance is a car's lag: it follows a cut within seconds) and an Excess car none from
# the grid; a car starts at most twice per hour present; limit changes stay bounded
# (one a minute at most, where a limit cycle between two modes made 2,500 an hour).
LAG_WH = 50.0  # Wh
STARTS_PER_H = 2.0
CHANGES_PER_H = 60.0


@cache
def day(path: Path, cycle_s: float = 5.0) -> Result:
    scenario = load_scenario(path)
    return simulate(replace(scenario, cycle_s=cycle_s), trace=True)


@pytest.mark.parametrize("path", DAYS, ids=IDS)
def test_solar_and_excess_cars_take_no_battery_energy(path: Path):
    tally = day(path).tally
    for car in tally.chargers:
        if car.mode in SUN_MODES:
            assert car.battery_wh < LAG_WH, car.id


@pytest.mark.parametrize("path", DAYS, ids=IDS)
def test_excess_cars_take_no_grid_energy(path: Path):
    for car in day(path).tally.chargers:
        if car.mode is Mode.EXCESS:
            assert car.grid_wh < LAG_WH, car.id


# A charger that ignores its limits or drops off makes the guard cut the others every
# time it overloads a phase (guard-at-work shows it): the bound is for chargers that obey.
OBEYING = [
    (p, i) for p, i in zip(DAYS, IDS, strict=True)
    if all(s.behaviour == "obeys" for s in load_scenario(p).sessions)
]


@pytest.mark.parametrize("path", [p for p, _ in OBEYING], ids=[i for _, i in OBEYING])
def test_starts_and_limit_changes_stay_bounded(path: Path):
    for car in day(path).tally.chargers:
        assert car.starts <= STARTS_PER_H * max(1.0, car.present_s / 3600), car.id
        assert car.changes_per_h <= CHANGES_PER_H, car.id


@pytest.mark.parametrize("path", DAYS, ids=IDS)
def test_no_car_is_fed_by_the_battery_below_soc_min(path: Path):
    result = day(path)
    battery = result.scenario.site.battery
    if battery is None:
        return
    trace, dt = result.trace, result.scenario.cycle_s
    assert trace is not None
    below_wh = 0.0
    for pv, house, battery_w, soc in zip(
        trace.pv_w, trace.household_w, trace.battery_w, trace.battery_soc, strict=True
    ):
        if soc is not None and soc < battery.soc_min:
            # What the battery gives beyond the house's own deficit goes into cars.
            below_wh += max(0.0, min(battery_w, pv + battery_w - sum(house))) * dt / 3600
    # The floor is seen one cycle late and a car follows a stop after its lag (5 s): a
    # 4 kW car's 7 s per stop.
    stops = sum(car.stops for car in result.tally.chargers)
    assert below_wh < LAG_WH + 10.0 * stops


def test_excess_afternoon_stops_the_van_once_the_site_would_import():
    path = ROOT / "gateway" / "sim" / "scenarios" / "excess-afternoon.toml"
    scenario = load_scenario(path)
    for s in (scenario, replace(scenario, site=scenario.site._replace(battery=None), battery=None)):
        tally = simulate(replace(s, cycle_s=5.0)).tally
        (van,) = tally.chargers
        assert van.energy_wh > 10_000  # it did run on the afternoon's excess
        assert van.grid_wh + van.battery_wh < LAG_WH
        assert van.stops == 1
    # The battery is left for the house: it ends the day nearly full.
    assert tally.battery_min_soc is None  # (the second run had none)
    assert day(path).tally.battery_min_soc > 90


def test_net_metering_lets_the_one_phase_car_use_the_whole_surplus():
    path = ROOT / "gateway" / "sim" / "scenarios" / "net-metering.toml"
    net = day(path).tally.chargers[0]
    scenario = load_scenario(path)
    per_phase = replace(scenario, site=scenario.site._replace(metering=Metering.PER_PHASE))
    split = simulate(replace(per_phase, cycle_s=5.0)).tally.chargers[0]
    assert net.energy_wh > 15_000
    assert split.energy_wh < net.energy_wh / 3
    assert net.grid_wh < 0.02 * net.energy_wh  # the stop delay's minutes only


def test_solar_and_excess_sharing_a_surplus_do_not_cycle():
    path = ROOT / "gateway" / "sim" / "scenarios" / "sunny-solar-excess.toml"
    garage, van = day(path).tally.chargers
    assert garage.changes_per_h < 5 and van.changes_per_h < 5
    assert garage.energy_wh == pytest.approx(30_000, abs=50)
    assert van.energy_wh > 2_000


def test_battery_policy_day_keeps_the_battery_for_the_house():
    path = ROOT / "gateway" / "sim" / "scenarios" / "battery-policy.toml"
    result = day(path)
    eco, solar = result.tally.chargers
    # The Eco car may use the battery above soc_min (the default supply_modes) and does;
    # the Solar car waits for the battery's target and gets nothing from it.
    assert eco.battery_wh > 1_000
    assert solar.battery_wh == 0.0
    reasons = {text for row in result.trace.reason for text in row}
    assert "battery below soc_min" in reasons
