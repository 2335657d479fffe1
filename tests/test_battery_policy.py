"""The battery policy rule shared by the allocator and the battery hold."""

import math

import pytest

from gateway.allocation.battery import allowance_w
from gateway.allocation.snapshot import read_battery
from gateway.model import Battery, Mode
from gateway.schema import SchemaError, Table

BASE = Battery(max_charge_w=5000, max_discharge_w=5000, soc_min=20, soc_target=80)


def test_below_soc_min_no_mode_gets_the_battery() -> None:
    for mode in Mode:
        assert allowance_w(BASE, mode, 19.9) == 0.0


def test_standard_and_eco_may_use_it_above_soc_min_by_default() -> None:
    assert allowance_w(BASE, Mode.STANDARD, 20) == math.inf
    assert allowance_w(BASE, Mode.ECO, 50) == math.inf


def test_solar_and_excess_never_without_the_opt_in() -> None:
    for mode in (Mode.SOLAR, Mode.EXCESS):
        assert allowance_w(BASE, mode, 100) == 0.0


def test_assist_is_capped_and_starts_at_its_soc() -> None:
    battery = Battery(5000, 5000, soc_min=20, soc_target=80, assist_soc=60, assist_w=1500)
    assert allowance_w(battery, Mode.SOLAR, 59) == 0.0
    assert allowance_w(battery, Mode.SOLAR, 60) == 1500
    assert allowance_w(battery, Mode.EXCESS, 90) == 1500


def test_modes_left_out_of_supply_modes_get_nothing() -> None:
    battery = Battery(5000, 5000, supply_modes=frozenset({Mode.STANDARD}))
    assert allowance_w(battery, Mode.ECO, 90) == 0.0
    assert allowance_w(battery, Mode.STANDARD, 90) == math.inf


def test_unknown_soc_supplies_nothing() -> None:
    assert allowance_w(BASE, Mode.STANDARD, None) == 0.0
    assert allowance_w(BASE, Mode.STANDARD, math.nan) == 0.0


def test_the_keys_are_read_and_checked() -> None:
    t = Table(
        {"max_charge_w": 1, "max_discharge_w": 1, "supply_modes": ["standard"],
         "assist_soc": 50, "assist_w": 800},
        "site.battery",
    )
    battery = read_battery(t)
    assert battery.supply_modes == {Mode.STANDARD}
    assert (battery.assist_soc, battery.assist_w) == (50, 800)
    with pytest.raises(SchemaError, match=r"supply_modes\[0\].*must be one of"):
        read_battery(Table({"max_charge_w": 1, "max_discharge_w": 1, "supply_modes": ["sun"]}, "b"))
    with pytest.raises(SchemaError, match=r"assist_soc.*>= soc_min"):
        read_battery(Table({"max_charge_w": 1, "max_discharge_w": 1, "assist_soc": 10}, "b"))
