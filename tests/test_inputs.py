"""Meter readings, live charger state and written overrides -> one Snapshot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.inputs import charger_inputs, read_site
from gateway.model import Battery, Mode
from tests.allocation_helpers import charger, site


@dataclass
class R:
    value: float
    at: float


@dataclass
class Meter:
    name: str
    role: str
    values: dict
    ok: bool = True
    charger: str | None = None


@dataclass
class Live:
    online: bool = True
    status: str | None = "Charging"
    draw_a: tuple = (10.0, 10.0, 10.0)
    reading_mono: float | None = None
    lines_reported: tuple = (True, True, True)
    sent_a: float | None = None
    sent_until_mono: float | None = None
    failsafe_a: float = 6.0
    uncontrolled: bool = False


@dataclass
class Override:
    max_a: float | None = None
    enabled: bool | None = None
    mode: Mode | None = None


@dataclass
class Overrides:
    site_current_a: float | None = None
    site_power_w: float | None = None
    chargers: dict = field(default_factory=dict)

    def charger(self, charger_id):
        return self.chargers.get(charger_id, Override())


def grid_meter(at: float, **extra) -> Meter:
    values = {f"current_l{i}_a": R(v, at) for i, v in enumerate((5.0, -2.0, 1.0), 1)}
    values.update({k: R(v, at) for k, v in extra.items()})
    return Meter("grid", "grid", values)


def test_grid_currents_with_their_age_and_the_other_sources():
    meters = [
        grid_meter(at=100.0, voltage_l1_v=231, voltage_l2_v=229, voltage_l3_v=230, power_w=920),
        Meter("pv", "pv", {"power_w": R(4000, 101.0)}),
        Meter("bat", "battery", {"soc_pct": R(55, 101.0), "power_w": R(-800, 101.0)}),
    ]
    inputs = read_site(meters, site(battery=Battery(4000, 4000)), now=102.5, stale_after_s=10)
    m = inputs.measurements
    assert m.grid_current_a == (5.0, -2.0, 1.0)
    assert inputs.grid_age_s == 2.5
    assert m.voltage_v == (231, 229, 230)
    assert (m.pv_power_w, m.battery_soc, m.battery_power_w) == (4000, 55, -800)
    assert inputs.grid_power_w == 920
    assert inputs.failing_meters == ()


def test_current_derived_from_signed_power_when_the_meter_has_none():
    values = {f"power_l{i}_w": R(p, 50.0) for i, p in enumerate((2300, -460, 0), 1)}
    values.update({f"voltage_l{i}_v": R(230, 50.0) for i in (1, 2, 3)})
    inputs = read_site([Meter("g", "grid", values)], site(), now=51, stale_after_s=10)
    assert inputs.measurements.grid_current_a == (10.0, -2.0, 0.0)


def test_no_grid_reading_yet_is_infinitely_old_and_stale_extras_are_dropped():
    meters = [
        Meter("grid", "grid", {}, ok=False),
        Meter("bat", "battery", {"soc_pct": R(55, 0.0), "power_w": R(0, 0.0)}),
    ]
    inputs = read_site(meters, site(), now=100, stale_after_s=10)
    assert inputs.grid_age_s == math.inf
    assert inputs.measurements.grid_current_a == (0.0, 0.0, 0.0)
    assert inputs.measurements.battery_soc is None
    assert inputs.failing_meters == ("grid",)


def test_live_state_submeters_and_overrides_shape_the_chargers():
    configured = [charger("a", max_a=32), charger("b"), charger("c"), charger("d")]
    live = {
        "a": Live(draw_a=(12.0, 0.0, 11.5)),
        "b": Live(online=False),
        "c": Live(status="SuspendedEV", draw_a=(0, 0, 0)),
    }
    overrides = Overrides(
        chargers={"a": Override(max_a=20, mode=Mode.SOLAR), "c": Override(enabled=False)}
    )
    submeter = Meter("sub", "charger", {"current_l1_a": R(-13.0, 9.0)}, charger="a")
    out = {c.id: c for c in charger_inputs(configured, live, overrides, [submeter], 10, 10)}
    assert out["a"].draw_a == (13.0, 0.0, 0.0)  # the sub-meter wins over MeterValues
    assert (out["a"].mode, out["a"].max_a, out["a"].status) == (Mode.SOLAR, 20, "Charging")
    assert out["b"].status == "Unavailable"  # offline
    assert out["c"].status == "Unavailable"  # disabled over Modbus
    assert out["d"].status == "Unavailable" and out["d"].draw_a == (0, 0, 0)  # never seen


def test_a_left_over_reading_of_a_charger_that_is_not_charging_counts_as_no_draw():
    live = {"a": Live(status="SuspendedEVSE", draw_a=(16.0, 16.0, 16.0))}
    (out,) = charger_inputs([charger("a")], live, None)
    assert out.draw_a == (0.0, 0.0, 0.0)


def test_a_written_max_never_raises_the_configured_one():
    overrides = Overrides(chargers={"a": Override(max_a=63)})
    (out,) = charger_inputs([charger("a", max_a=16)], {"a": Live()}, overrides)
    assert out.max_a == 16


def test_the_periodic_summary_line_says_the_site_and_who_charges():
    from gateway.allocation.controller import Command, Decision
    from gateway.hub import summary_line
    from gateway.inputs import SiteInputs
    from gateway.model import Measurements, Reason, Snapshot

    m = Measurements(
        grid_current_a=(5.0, -2.0, 1.0), pv_power_w=4000, battery_soc=55, battery_power_w=-800
    )
    inputs = SiteInputs(m, grid_age_s=0.5, grid_power_w=920, failing_meters=())
    decision = Decision(
        commands=(
            Command("a", 16.0, Reason.STANDARD, ""),
            Command("b", 0.0, Reason.NOT_ACTIVE, ""),
        ),
        allocation=None,
        failsafe=False,
        external_limit=False,
    )
    line = summary_line(Snapshot(site=site(), measurements=m), inputs, decision)
    assert line == "summary: grid 5.0/-2.0/1.0 A; pv 4000 W; battery 55 % -800 W; chargers a 16.0 A"


def test_a_meter_reading_outside_physics_is_a_failed_read():
    for bad in (math.nan, math.inf, -1e9, 1e9):
        values = {f"current_l{i}_a": R(v, 100.0) for i, v in enumerate((5.0, bad, 1.0), 1)}
        inputs = read_site([Meter("g", "grid", values)], site(), now=100.5, stale_after_s=10)
        assert inputs.grid_age_s == math.inf  # no believed grid reading: stale, failsafe
        assert inputs.implausible == ("g current_l2_a",)


def test_charger_draw_is_subtracted_only_where_it_is_believed():
    c = charger("a", max_a=16)
    cases = {
        "offline": Live(online=False),
        "uncontrolled": Live(uncontrolled=True),
        "stale report": Live(reading_mono=0.0),
        "absurd": Live(draw_a=(1000.0, 1e39, math.nan)),
    }
    for what, live in cases.items():
        (out,) = charger_inputs([c], {"a": live}, None, (), now=100.0, stale_after_s=10)
        assert out.draw_a == (0.0, 0.0, 0.0), what  # its real draw stays in the household
    l1_only = Live(draw_a=(12.0, 0.0, 0.0), lines_reported=(True, False, False), reading_mono=99)
    (out,) = charger_inputs([c], {"a": l1_only}, None, (), now=100.0, stale_after_s=10)
    assert out.draw_a == (12.0, 0.0, 0.0) and out.status == "Charging"
    (out,) = charger_inputs([c], {"a": Live(uncontrolled=True)}, None, (), 100.0, 10)
    assert out.status == "Unavailable"  # not commanded: fixed load for the others


def test_a_car_on_lines_the_charger_is_not_configured_for_is_counted_on_them():
    c = charger("a", max_a=16, phases=1, phase_map="B")
    (out,) = charger_inputs([c], {"a": Live(draw_a=(10.0, 10.0, 10.0))}, None, (), 0.0, 10, 3)
    assert (out.phases, out.phase_map) == (3, "BCA")


def test_an_offline_charger_with_a_car_is_counted_at_its_last_limit_then_its_failsafe():
    from gateway.allocation.guard import FOLLOW_S
    from gateway.inputs import ControlState, control_state

    gone = Live(online=False, sent_a=16.0, sent_until_mono=100.0, failsafe_a=8.0)
    assert control_state(gone, 50.0) == (ControlState.OFFLINE_AT_LIMIT, 16.0)
    assert control_state(gone, 100.0) == (ControlState.OFFLINE_AT_FAILSAFE, 8.0)
    # A limit below the failsafe: the failsafe counts from FOLLOW_S before the lapse,
    # so the other cars have followed their cuts when the charger rises by itself.
    low = Live(online=False, sent_a=6.0, sent_until_mono=100.0, failsafe_a=10.0)
    assert control_state(low, 100.0 - FOLLOW_S - 0.1) == (ControlState.OFFLINE_AT_LIMIT, 6.0)
    assert control_state(low, 100.0 - FOLLOW_S) == (ControlState.OFFLINE_AT_LIMIT, 10.0)
    never_acknowledged = Live(online=False, failsafe_a=8.0)
    assert control_state(never_acknowledged, 0.0) == (ControlState.OFFLINE_AT_FAILSAFE, 8.0)
    for view, state in (
        (Live(), ControlState.CONTROLLED),
        (Live(uncontrolled=True), ControlState.UNCONTROLLED),
        (Live(online=False, uncontrolled=True), ControlState.UNCONTROLLED),
        (Live(online=False, status="Available", sent_a=16.0), ControlState.OFFLINE),
        (None, ControlState.OFFLINE),
    ):
        found, amps = control_state(view, 50.0)
        assert found is state and math.isnan(amps), view


def test_the_grid_is_planned_with_what_an_offline_charger_may_still_draw():
    from gateway.inputs import planning_measurements
    from gateway.model import Measurements

    m = Measurements(grid_current_a=(20.0, 20.0, 20.0))
    c = charger("a", max_a=16, phases=3)
    one = charger("b", max_a=16, phases=1, phase_map="B")
    # Its car draws 10 A of the 16 A it may take: 6 A more may come, on each of its lines.
    gone = Live(online=False, draw_a=(10.0, 10.0, 10.0), sent_a=16.0, sent_until_mono=100.0)
    planned = planning_measurements(m, [c], {"a": gone}, 50.0, 3)
    assert planned.grid_current_a == (26.0, 26.0, 26.0)
    # Drawing its limit: all of it is in the grid reading already, nothing is added.
    at_limit = Live(online=False, draw_a=(16.0, 16.0, 16.0), sent_a=16.0, sent_until_mono=100.0)
    assert planning_measurements(m, [c], {"a": at_limit}, 50.0, 3) is m
    # A 1-phase charger on B that reported L1 only (unknown lines count as 0).
    one_gone = Live(online=False, draw_a=(0.0, 0.0, 0.0), sent_a=0.0, failsafe_a=6.0)
    planned = planning_measurements(m, [c, one], {"a": at_limit, "b": one_gone}, 50.0, 3)
    assert planned.grid_current_a == (20.0, 26.0, 20.0)
    # Online again, or never with a car: the grid as measured.
    for view in (Live(), Live(online=False, status="Available", sent_a=16.0)):
        assert planning_measurements(m, [c], {"a": view}, 50.0, 3) is m


def test_a_charger_reading_counts_until_the_next_one_is_overdue():
    """Chargers report every meter_interval_s (10 s): a reading 10.1 s old is not stale
    when the caller gives the reports their own age (the hub: stale_after + interval)."""
    c = charger("a", max_a=16)
    late = Live(reading_mono=89.9)
    (out,) = charger_inputs([c], {"a": late}, None, (), now=100.0, stale_after_s=10)
    assert out.draw_a == (0.0, 0.0, 0.0)
    (out,) = charger_inputs(
        [c], {"a": late}, None, (), now=100.0, stale_after_s=10, report_max_age_s=20
    )
    assert out.draw_a == (10.0, 10.0, 10.0)
