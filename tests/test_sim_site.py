"""The site model's physics and the time series it is driven by."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.allocation.controller import Command
from gateway.model import Charger, Reason, Site
from gateway.schema import SchemaError, Table
from gateway.sim.series import Series, parse_time, read_series
from gateway.sim.site import HomeBattery, Session, SiteModel

SITE = Site(main_breaker_a=25)


def flat(watts: float, *more: float) -> Series:
    return Series([0.0], [(watts, *more)])


def command(limit: float, cid: str = "c1") -> Command:
    return Command(cid, limit, Reason.STANDARD, "")


def test_battery_covers_load_and_stores_surplus_within_its_limits():
    b = HomeBattery(capacity_wh=10_000, soc=50, max_charge_w=3000, max_discharge_w=2000)
    b.settle(1500)
    assert b.power_w == 1500
    b.settle(5000)
    assert b.power_w == 2000  # discharge limit
    b.settle(-4000)
    assert b.power_w == -3000  # charge limit
    b.run(3600)  # an hour at 3 kW into 10 kWh
    assert b.soc == pytest.approx(80)
    b.soc, b.reserve_soc = 5.0, 5.0
    b.settle(800)
    assert b.power_w == 0.0  # at its reserve: no discharge
    b.soc = 100.0
    b.settle(-800)
    assert b.power_w == 0.0  # full: no charge


def test_grid_reading_is_household_plus_cars_minus_pv_and_battery_per_phase():
    charger = Charger(id="c1", min_a=6, max_a=16, phase_map="BCA")
    # A 1-phase car on a 3-phase charger wired L1 -> B.
    session = Session("c1", arrive_s=0, leave_s=1000, energy_wh=10_000, phases=1, lag_s=5)
    battery = HomeBattery(capacity_wh=10_000, soc=50, max_charge_w=1380, max_discharge_w=1380)
    model = SiteModel(SITE, [charger], [session], flat(690, 1380, 2070), flat(2070.0), battery)
    snap, _ = model.measure(0)
    assert snap.chargers[0].status == "SuspendedEVSE"
    # Household 3, 6, 9 A; PV 2070 W = 3 A per phase; the battery covers the rest up to
    # its 1380 W = 2 A per phase: 3 + 6 + 9 - 9 = 9 A net, 6 A of it left on the grid.
    assert snap.measurements.battery_power_w == 1380
    assert snap.measurements.grid_current_a == pytest.approx((-2.0, 1.0, 4.0))
    model.apply([command(10)], 0)
    assert model.measure(4)[0].chargers[0].draw_a == (0.0, 0.0, 0.0)  # the car's lag
    snap, _ = model.measure(5)
    assert snap.chargers[0].status == "Charging"
    assert snap.chargers[0].draw_a == (10.0, 0.0, 0.0)
    assert snap.measurements.grid_current_a == pytest.approx((-2.0, 11.0, 4.0))


def test_cars_arrive_stop_when_full_and_leave():
    charger = Charger(id="c1", min_a=6, max_a=16)
    sessions = [
        Session("c1", arrive_s=100, leave_s=5000, energy_wh=230 * 3 * 16 / 3600 * 600),
        Session("c1", arrive_s=6000, leave_s=7000, energy_wh=50_000),
    ]
    model = SiteModel(SITE, [charger], sessions, flat(0.0))
    assert model.measure(0)[0].chargers[0].status == "Available"
    assert model.measure(100)[0].chargers[0].status == "SuspendedEVSE"
    model.apply([command(16)], 100)
    assert model.measure(105)[0].chargers[0].status == "Charging"
    # 600 s at 16 A fills the car: 1840 Wh.
    assert model.measure(704)[0].chargers[0].draw_a[0] == 16.0
    snap, _ = model.measure(706)
    assert (snap.chargers[0].status, snap.chargers[0].draw_a) == ("SuspendedEV", (0.0, 0.0, 0.0))
    assert model.measure(5000)[0].chargers[0].status == "Available"
    # Energy is counted per cycle: the car notices it is full up to one cycle late.
    assert model.bays[0].energy_wh == pytest.approx(1840, abs=16 * 690 * 2 / 3600)
    assert model.measure(6000)[0].chargers[0].status == "Charging"  # still offered 16 A
    model.measure(6005)  # the new car follows the 16 A offered after its lag...
    model.measure(6015)  # ...and 10 s at 16 A are counted
    assert model.bays[0].energy_wh == pytest.approx(1843.07 + 16 * 690 * 10 / 3600, abs=0.1)


def test_series_interpolates_linearly_or_in_steps_and_holds_at_the_ends():
    s = Series([0.0, 100.0, 200.0], [(0.0,), (1000.0,), (500.0,)])
    assert [s.at(t)[0] for t in (-5, 0, 50, 100, 150, 250)] == [0, 0, 500, 1000, 750, 500]
    s.step = True
    assert [s.at(t)[0] for t in (50, 100, 199.9, 300)] == [0, 1000, 1000, 500]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("07:30", 27000), ("07:30:15", 27015), ("31:00", 111600), (90, 90.0), (12.5, 12.5)],
)
def test_times(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["7h30", "07:75", "-1:00", True, "noon"])
def test_bad_times(bad):
    t = Table({"points": [[bad, 1]]}, "pv")
    with pytest.raises(SchemaError) as info:
        read_series(t, Path("."), [1], "W")
    assert info.value.path == "pv.points[0]"
    assert "must be a time" in info.value.message


def test_csv_series_with_header_iso_times_and_per_phase_columns(tmp_path: Path):
    (tmp_path / "load.csv").write_text(
        "timestamp,a,b,c\n"
        "2025-06-01T00:00:00,100,200,300\n"
        "# a comment\n"
        "2025-06-01T00:10:00,400,200,300\n"
        "2025-06-02T00:00:00,100,100,100\n"
    )
    s = read_series(Table({"csv": "load.csv"}, "household"), tmp_path, [1, 3], "W")
    assert s.times == [0.0, 600.0, 86400.0]
    assert s.at(300) == (250.0, 200.0, 300.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,w\n00:00,1\n00:10,x\n", "load.csv:3: not a number: 'x'"),
        ("time,w\n00:00,1\n7h,1\n", "load.csv:3: not a time: '7h'"),
        ("00:00,1\n00:10,1,2\n", "load.csv:2: needs a time and 1 or 3 value(s) in W, not 2"),
        ("00:10,1\n00:05,1\n", "load.csv:2: times must increase"),
        ("time,w\n", "load.csv: no data rows"),
    ],
)
def test_bad_csv_rows_name_the_csv_file_and_line(tmp_path: Path, content, message):
    (tmp_path / "load.csv").write_text(content)
    with pytest.raises(SchemaError) as info:
        read_series(Table({"csv": "load.csv"}, "household"), tmp_path, [1, 3], "W")
    assert info.value.path == "household.csv"
    assert info.value.message.endswith(message)
