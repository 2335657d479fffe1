"""1-phase/3-phase switching (gateway/allocation/phases.py through the controller).

The car is the simulated EV (gateway/sim/ev.py): physics says what it draws on which
line, and it counts every switch made while it draws. The properties: never a switch
under load, never two switches within the dwell time, whatever the sun does; a car
that ignores the switch is found from its draw and counted on its real lines.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.allocation.controller import Controller
from gateway.allocation.phases import PhaseSettings
from gateway.allocation.timing import ControlSettings, Timing
from gateway.config import load_config
from gateway.model import Charger, Inverter, Measurements, Mode, Reason, Site, Snapshot
from gateway.ocpp.profiles import base_layer, dynamic_layer, profile_16, profile_201
from gateway.sim.chargepoint import SimChargePoint, read_profile
from gateway.sim.ev import EV
from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import simulate

VOLTS = 230.0
NOW = 1_800_000_000.0
HOUSE_W = 300.0
# An inverter that can put its output on any phase: only then is 3-phase export surplus
# for a 1-phase car (with a symmetric one, 1 phase gets a third of it: docs/controller.md).
SITE = Site(main_breaker_a=25.0, excess_threshold_w=1500.0, inverter=Inverter(asymmetric=True))


def _run(mode, steps, dwell_s, lag_s, cycle_s, ignores=False):
    """Drive the controller and one car through `steps` of (PV watts, seconds).

    Yields (now, command, car) each cycle, after the command reached the car."""
    charger = Charger(id="c", min_a=6.0, max_a=16.0, mode=mode)
    timing = Timing(start_delay_s=0.0, stop_delay_s=0.0, min_pause_s=0.0, phase_dwell_s=dwell_s)
    controller = Controller(
        ControlSettings(timing=timing),
        phase_switching={"c": PhaseSettings(3, charger.min_a, dwell_s)},
    )
    state = controller.initial_state()
    car = EV(max_a=16.0, phases=3, energy_wanted_wh=1e9, lag_s=lag_s, ignores_phase_switch=ignores)
    now = 0.0
    for pv_w, seconds in steps:
        for _ in range(max(1, round(seconds / cycle_s))):
            car.advance(now, VOLTS)
            lines = car.line_currents()
            grid = tuple((HOUSE_W - pv_w) / 3 / VOLTS + a for a in lines)
            status = "Charging" if car.draw_a > 0 else "SuspendedEVSE"
            seen = charger._replace(status=status, draw_a=lines)
            snapshot = Snapshot(SITE, Measurements(grid_current_a=grid, pv_power_w=pv_w), (seen,))
            state, decision = controller.step(state, snapshot, now, grid_age_s=0.0)
            command = decision.commands[0]
            car.offer(command.limit_a, now, command.phases)
            yield now, command, car, state
            now += cycle_s


sun = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1500.0, 2500.0, 4000.0, 4600.0, 6000.0, 9000.0]), st.floats(2, 400)
    ),
    min_size=2,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    steps=sun,
    mode=st.sampled_from([Mode.SOLAR, Mode.EXCESS, Mode.ECO]),
    dwell_s=st.sampled_from([0.0, 30.0, 300.0]),
    lag_s=st.sampled_from([0.0, 2.0, 5.0]),
    cycle_s=st.sampled_from([1.0, 3.0]),
)
def test_never_under_load_nor_within_the_dwell(steps, mode, dwell_s, lag_s, cycle_s):
    switched = []
    last_phases = 3
    car = None
    for now, command, car, _ in _run(mode, steps, dwell_s, lag_s, cycle_s):  # noqa: B007
        assert command.phases in (1, 3)
        if command.phases != last_phases:
            switched.append(now)
            last_phases = command.phases
        if command.reason is Reason.PHASE_SWITCH:
            assert command.limit_a == 0.0
    assert car.switched_under_load == 0
    for before, after in itertools.pairwise(switched):
        assert after - before >= dwell_s - 1e-9, switched


def test_switches_down_for_little_sun_and_back_up_for_plenty():
    steps = [(2500.0, 400.0), (9000.0, 600.0)]
    seen = [
        (now, c.phases, c.limit_a, car.lines, car.draw_a)
        for now, c, car, _ in _run(Mode.SOLAR, steps, dwell_s=300.0, lag_s=2.0, cycle_s=1.0)
    ]
    one_phase = [s for s in seen if s[0] < 400 and s[3] == 1 and s[4] >= 6.0]
    assert one_phase, "2.5 kW never charged the car on 1 phase"
    # 2.5 kW less 300 W house on one line: about 9 A, never 3 x 6 A.
    assert all(s[4] <= 2500.0 / VOLTS for s in one_phase)
    late = seen[-1]
    assert late[1] == 3 and late[3] == 3 and late[4] >= 6.0, late


def test_a_car_ignoring_the_switch_is_found_and_counted_on_its_lines():
    steps = [(0.0, 30.0), (2500.0, 200.0)]
    runs = list(_run(Mode.STANDARD, [(9000.0, 20.0)], 0.0, 1.0, 1.0))
    assert runs[-1][1].phases == 3  # Standard with room never leaves 3 phases
    _, command, car, state = list(_run(Mode.SOLAR, steps, 0.0, 1.0, 1.0, ignores=True))[-1]
    assert state.chargers["c"].phase.ignored
    assert command.phases == 3
    assert car.lines == 3
    # Told 1 phase, it drew 3 x the limit; treated by its real phases the car may not
    # start again on 2.5 kW (3 phases cannot carry 6 A on it).
    assert command.limit_a == 0.0


def test_phase_switching_is_read_per_charger(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[site]\nmain_breaker_a = 25\n[control]\nphase_dwell_s = 600\n"
        '[[chargers]]\nid = "a"\nphase_switching = true\n[[chargers]]\nid = "b"\n'
    )
    a, b = load_config(path).chargers
    assert (a.phase_switching, b.phase_switching) == (True, False)
    assert a.timing.phase_dwell_s == 600
    controller = Controller.for_chargers(ControlSettings(), (a, b))
    assert controller.phase_switching == {"a": PhaseSettings(3, 6.0, 600.0)}


def test_phase_switching_on_a_one_phase_charger_exits_2(tmp_path: Path, cli):
    path = tmp_path / "c.toml"
    path.write_text(
        '[site]\nmain_breaker_a = 25\n[[chargers]]\nid = "a"\nphases = 1\nphase_switching = true\n'
    )
    result = cli("check-config", str(path))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{path}:6: chargers[0].phase_switching:" in line
    assert "3-phase" in line


# -- the spring day (gateway/sim/scenarios/spring-phase-switching.toml) -----------------

SPRING = Path(__file__).parent.parent / "gateway/sim/scenarios/spring-phase-switching.toml"


def _spring(switching: bool, ignores: bool = False):
    scenario = load_scenario(SPRING)
    quirks = frozenset({"ignores_phase_switch"} if ignores else ())
    return simulate(
        replace(
            scenario,
            cycle_s=2.0,
            chargers=tuple(replace(c, phase_switching=switching) for c in scenario.chargers),
            sessions=tuple(replace(s, quirks=quirks) for s in scenario.sessions),
        )
    ).tally


def test_spring_day_switching_puts_far_more_sun_into_the_car():
    on, off = _spring(True), _spring(False)
    car_on, car_off = on.chargers[0], off.chargers[0]
    assert car_on.energy_wh > 1.3 * car_off.energy_wh
    assert on.used_pct is not None and off.used_pct is not None
    assert on.used_pct > 85 > 65 > off.used_pct
    assert car_on.pv_wh > 0.95 * car_on.energy_wh
    # 1 phase in the morning, 3 around noon, 1 in the afternoon; one start, one stop.
    assert 2 <= car_on.switches <= 4
    assert (car_on.starts, car_on.stops) == (1, 1)
    assert on.beyond_as == 0.0 and off.beyond_as == 0.0


def test_spring_day_with_a_charger_ignoring_the_switch():
    tally = _spring(True, ignores=True)
    car = tally.chargers[0]
    # Found on its first resume: no further switches, charged like a 3-phase car.
    assert car.switches == 1
    assert tally.beyond_as == 0.0
    assert car.energy_wh == pytest.approx(_spring(False).chargers[0].energy_wh, rel=0.1)


# -- what the charger is sent (gateway/ocpp/profiles.py) ---------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_number_phases_in_every_period_and_phase_to_use_on_one_phase(version):
    build = profile_16 if version == "1.6" else profile_201
    base = base_layer(6, "A", 0.1, 230, 3)
    for phases in (1, 3):
        payload = build(dynamic_layer(10, "A", 3, NOW, 60, base, phases=phases), "absolute", NOW)
        schedule = payload["charging_schedule"]
        periods = (schedule[0] if version == "2.0.1" else schedule)["charging_schedule_period"]
        # The failsafe tail keeps the phase set: a gateway gone quiet switches nothing.
        assert [p["number_phases"] for p in periods] == [phases, phases]
        to_use = [p.get("phase_to_use") for p in periods]
        assert to_use == ([1, 1] if version == "2.0.1" and phases == 1 else [None, None])
        point = SimChargePoint("X", "ws://127.0.0.1:1/X", version=version, clock=lambda: NOW)
        assert point.install(read_profile(payload, 1, version, NOW)) == "Accepted"
        assert point.effective_phases(NOW) == phases
    plain = build(dynamic_layer(10, "A", 3, NOW, 60, base), "absolute", NOW)
    assert "number_phases" not in str(plain)  # chargers that do not switch: as before
