"""Whatever the timers do, the commands never load a phase beyond the breaker."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.allocation.controller import Controller
from gateway.allocation.timing import ControlSettings, Timing
from gateway.model import PHASE_NAMES, Charger, Distribution, Measurements, Mode, Site, Snapshot

MAPS = ["ABC", "BCA", "CAB", "A", "B", "C"]

chargers = st.lists(
    st.builds(
        lambda i, mode, phases, phase_map, priority, max_a: Charger(
            id=f"c{i}",
            mode=mode,
            min_a=6,
            max_a=max_a,
            phases=min(phases, len(phase_map)),
            priority=priority,
            phase_map=phase_map,
            status="Charging",
        ),
        st.integers(0, 0),
        st.sampled_from(list(Mode)),
        st.sampled_from([1, 3]),
        st.sampled_from(MAPS),
        st.integers(1, 3),
        st.sampled_from([16.0, 32.0]),
    ),
    min_size=1,
    max_size=5,
)
phase_load = st.floats(-30, 40, allow_nan=False)
steps = st.lists(
    st.tuples(phase_load, phase_load, phase_load, st.floats(1, 200)), min_size=2, max_size=25
)


@settings(max_examples=150, deadline=None)
@given(
    fleet=chargers,
    steps=steps,
    breaker=st.sampled_from([16.0, 25.0, 35.0]),
    distribution=st.sampled_from(list(Distribution)),
    timing=st.builds(
        Timing,
        ramp_up_a_per_s=st.sampled_from([0.1, 0.5, 100.0]),
        dead_band_a=st.sampled_from([0.0, 0.5, 2.0]),
        start_delay_s=st.sampled_from([0.0, 60.0]),
        stop_delay_s=st.sampled_from([0.0, 180.0, 1000.0]),
        min_pause_s=st.sampled_from([0.0, 180.0]),
        excess_hold_s=st.sampled_from([0.0, 900.0]),
    ),
)
def test_commands_never_exceed_the_breaker(fleet, steps, breaker, distribution, timing):
    fleet = [c._replace(id=f"c{i}") for i, c in enumerate(fleet)]
    site = Site(main_breaker_a=breaker, distribution=distribution, excess_threshold_w=2000)
    controller = Controller(ControlSettings(timing=timing))
    state = controller.initial_state()
    now = 0.0
    for a, b, c, dt in steps:
        now += dt
        household = (a, b, c)
        snapshot = Snapshot(site, Measurements(grid_current_a=household), tuple(fleet))
        state, decision = controller.step(state, snapshot, now, grid_age_s=1.0)
        load = list(household)
        for charger, command in zip(fleet, decision.commands, strict=True):
            assert command.limit_a == 0 or charger.min_a <= command.limit_a <= charger.max_a
            for line in charger.phase_map[: charger.phases]:
                load[PHASE_NAMES.index(line)] += command.limit_a
        for p in range(3):
            if any(cmd.limit_a > 0 for cmd in decision.commands):
                assert load[p] <= max(breaker, household[p]) + 1e-6, (p, load, decision)
