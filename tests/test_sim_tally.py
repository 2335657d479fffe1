"""The simulator's energy figures on days simple enough to compute by hand.

One Standard car whose own maximum is 6 A on 3 phases draws 6 × 3 × 230 = 4140 W
whenever it charges, whatever the controller offers above 6 A; household, PV and battery
are constant, so every figure follows from the car's energy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sim.report import Event, visit_events
from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import Result, simulate

CAR_W = 6 * 3 * 230.0

DAY = """\
[simulation]
start = "12:00"
duration_h = 1
cycle_s = 1

[site]
main_breaker_a = 63
{site_battery}
[[chargers]]
id = "c1"
mode = "standard"

[household]
points = [["00:00", {house_w}]]
{pv}{battery}
[[sessions]]
charger = "c1"
arrive = "12:00"
leave = "{leave}"
energy_kwh = {energy_kwh}
max_a = 6
"""

SITE_BATTERY = """
[site.battery]
soc_min = 20
max_charge_w = 3000
max_discharge_w = 3000
"""

# 1 kWh between 55 % and the 5 % reserve: 500 Wh to give.
BATTERY = """
[battery]
capacity_kwh = 1
soc = 55
reserve_soc = 5
"""


def run(
    tmp_path: Path,
    house_w: float,
    pv_w: float | None = None,
    battery: bool = False,
    leave: str = "14:00",
    energy_kwh: float = 50,
) -> Result:
    path = tmp_path / "day.toml"
    path.write_text(
        DAY.format(
            site_battery=SITE_BATTERY if battery else "",
            house_w=house_w,
            pv="" if pv_w is None else f'\n[pv]\npoints = [["00:00", {pv_w}]]\n',
            battery=BATTERY if battery else "",
            leave=leave,
            energy_kwh=energy_kwh,
        )
    )
    return simulate(load_scenario(path))


def test_pv_beyond_the_house_goes_into_the_car_and_the_grid_gives_the_rest(tmp_path: Path):
    # 3450 W PV − 1150 W house = 2300 W for the car; 1840 W of its 4140 W is imported.
    tally = run(tmp_path, house_w=1150, pv_w=3450).tally
    car = tally.chargers[0]
    assert car.energy_wh > 3500  # charged for most of the hour
    assert car.pv_wh == pytest.approx(car.energy_wh * 2300 / CAR_W, rel=1e-6)
    assert car.grid_wh == pytest.approx(car.energy_wh * 1840 / CAR_W, rel=1e-6)
    assert car.battery_wh == 0.0
    assert tally.grid_to_cars_wh == pytest.approx(car.grid_wh)
    # The house is covered by PV: every imported Wh went into the car.
    assert tally.imported_wh == pytest.approx(tally.grid_to_cars_wh, rel=1e-6)
    assert tally.battery_min_soc is None and tally.below_soc_min_s == 0.0


def test_the_battery_serves_the_house_first_and_the_car_from_what_is_left(tmp_path: Path):
    # No PV. The battery gives 3000 W: 1150 W to the house, 1850 W to the car, down to
    # soc_min (20 %: 350 Wh); there the car waits (#13: no car is fed below soc_min)
    # while the last 150 Wh go into the house; then the grid gives the car all it takes.
    tally = run(tmp_path, house_w=1150, battery=True).tally
    car = tally.chargers[0]
    assert car.pv_wh == 0.0
    assert car.battery_wh + car.grid_wh == pytest.approx(car.energy_wh, rel=1e-9)
    assert tally.battery_to_cars_wh == pytest.approx(car.battery_wh)
    # While the car charges the battery's 350 Wh split 1150 : 1850; before it starts the
    # house has it all, after the floor the car follows within its lag.
    assert abs(tally.battery_to_cars_wh - 350 * 1850 / 3000) < 5
    assert tally.grid_to_cars_wh == pytest.approx(car.energy_wh - tally.battery_to_cars_wh)
    # Household import is what neither the battery nor PV covered of the house.
    house_import = tally.imported_wh - tally.grid_to_cars_wh
    assert house_import == pytest.approx(1150 - 350 * 1150 / 3000 - 150, abs=5)


def test_battery_minimum_and_time_below_soc_min(tmp_path: Path):
    # No house, no PV: the battery's 3000 W all go into the car from its first cycle of
    # draw; 55 % -> 20 % takes 35 % of 1 kWh at 3 kW = 420 s. There the car waits: the
    # idle battery would feed it again (#13), and nothing else draws on it.
    tally = run(tmp_path, house_w=0, battery=True).tally
    car = tally.chargers[0]
    assert tally.battery_to_cars_wh == pytest.approx(350, abs=5)  # the car's lag past 20 %
    assert car.battery_wh == pytest.approx(tally.battery_to_cars_wh)
    assert car.grid_wh == pytest.approx(car.energy_wh - tally.battery_to_cars_wh, abs=1)
    assert tally.battery_min_soc == pytest.approx(20, abs=0.5)
    # Below soc_min from the car's lag past it to the end of the hour.
    assert tally.below_soc_min_s == pytest.approx(3600 - 420, abs=15)
    assert tally.imported_wh == pytest.approx(tally.grid_to_cars_wh, rel=1e-6)


def test_a_visit_says_what_the_car_needed_got_and_when_it_was_full(tmp_path: Path):
    # 1 kWh at 4140 W is full 870 s after the car's start; it stays until 12:30.
    result = run(tmp_path, house_w=500, leave="12:30", energy_kwh=1)
    tally = result.tally
    car = tally.chargers[0]
    (visit,) = car.visits
    assert visit.needed_wh == 1000 == car.needed_wh
    assert visit.delivered_wh == pytest.approx(car.energy_wh)
    assert 1000 <= visit.delivered_wh < 1000 + CAR_W / 3600 + 1e-6  # one cycle's draw past
    assert visit.full_s is not None
    assert 12 * 3600 + 870 < visit.full_s < 12 * 3600 + 900
    assert car.starts == 1 and car.stops == 0
    assert car.present_s == 1800 and car.starts_per_h == pytest.approx(2.0)
    assert car.changes_per_h == pytest.approx(car.changes * 2)
    # What the plot marks.
    assert visit_events(result) == [
        Event(12 * 3600, 0, "arrive"),
        Event(visit.full_s, 0, "full"),
        Event(12.5 * 3600, 0, "leave"),
    ]


def test_a_car_that_leaves_before_it_is_full_is_not_full(tmp_path: Path):
    result = run(tmp_path, house_w=500, leave="12:10", energy_kwh=10)
    tally = result.tally
    (visit,) = tally.chargers[0].visits
    assert visit.full_s is None
    assert [e.kind for e in visit_events(result)] == ["arrive", "leave"]
    assert 0 < visit.delivered_wh < visit.needed_wh
    assert visit.delivered_wh == pytest.approx(tally.chargers[0].energy_wh)


def test_a_car_still_there_at_the_end_has_no_departure(tmp_path: Path):
    result = run(tmp_path, house_w=500, leave="14:00", energy_kwh=10)
    assert [e.kind for e in visit_events(result)] == ["arrive"]
