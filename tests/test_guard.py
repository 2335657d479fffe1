"""The measured-current guard, and the closed loop: a physical site whose grid current is
computed from what the cars really draw, the real inputs, controller and allocator in the
loop, and chargers and meters that misbehave. The oracle is the physics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.allocation.controller import Controller
from gateway.allocation.guard import FOLLOW_S, GUARD_MARGIN_A, guard
from gateway.allocation.timing import ControlSettings, Timing
from gateway.inputs import charger_inputs, planning_measurements, read_site
from gateway.model import PHASE_NAMES, Charger, Mode, Reason, Site, Snapshot
from gateway.sim.ev import EV
from tests.test_inputs import Live as View
from tests.test_inputs import Meter, R


def test_an_overloaded_phase_cuts_the_least_urgent_charger_by_the_excess_plus_margin():
    site = Site(main_breaker_a=25)
    chargers = [
        Charger("first", 6, 16, priority=1, status="Charging", draw_a=(10, 10, 10)),
        Charger("last", 6, 16, priority=2, status="Charging", draw_a=(10, 10, 10)),
    ]
    # Phase B measures 28 A: 3 A over.
    result = guard(site, (20, 28, 20), 230, chargers, [16, 16], [10, 10], [False, False])
    assert result.over == (0, 3, 0)
    assert result.limits == (10, 10 - 3 - GUARD_MARGIN_A)  # lowest priority cut, no rise
    assert result.cut == (True, True)


def test_a_cut_below_the_minimum_is_a_stop_and_the_rest_comes_from_the_next():
    site = Site(main_breaker_a=25)
    chargers = [
        Charger("a", 6, 16, priority=1, status="Charging", draw_a=(10, 0, 0), phase_map="A"),
        Charger("b", 6, 16, priority=2, status="Charging", draw_a=(7, 0, 0), phase_map="A"),
        Charger("c", 6, 16, priority=3, status="Charging", draw_a=(10, 0, 0), phase_map="B"),
    ]
    result = guard(site, (30, 12, 0), 230, chargers, [10, 7, 10], [10, 7, 10], [False] * 3)
    # 5 A over + 1 A margin: b (7 A) stops, which covers it; a and c keep theirs.
    assert result.limits == (10, 0, 10)


def test_import_over_the_cap_cuts_too():
    site = Site(main_breaker_a=35, max_import_w=11000)
    chargers = [Charger("a", 6, 16, status="Charging", draw_a=(16, 16, 16))]
    result = guard(site, (20, 20, 20), 230, chargers, [16], [16], [False])
    assert result.import_over_w == 60 * 230 - 11000
    assert result.limits[0] < 16 - (60 * 230 - 11000) / 230 / 3


def test_under_the_limit_the_guard_changes_nothing():
    site = Site(main_breaker_a=25)
    chargers = [Charger("a", 6, 16, status="Charging", draw_a=(10, 10, 10))]
    result = guard(site, (24, 24, 24), 230, chargers, [16], [10], [False])
    assert result.limits == (16,) and result.cut == (False,)


# -- the closed loop -------------------------------------------------------------------

BREAKER = 25.0
CYCLE_S = 1.0
STALE_S = 5.0
QUIRKS = (
    "none",
    "offline",
    "ignores_limits",
    "undeclared_lines",
    "l1_only",
    "rounded",
    "absurd",
    "stale_report",
    "uncontrolled",
)


@dataclass
class Bay:
    """A configured charger, the wiring it really has and the car on it."""

    config: Charger
    car: EV
    quirk: str
    wiring: str = "ABC"  # site phase of each car line, whatever the config says
    offline: tuple[float, float] = (0.0, 0.0)  # from, until
    validity_s: float = 30.0
    limit_a: float = 0.0  # what the charger offers the car
    sent_at: float = 0.0
    last_report: tuple = field(default=(0.0, 0.0, 0.0))

    def offline_at(self, now: float) -> bool:
        return self.quirk == "offline" and self.offline[0] <= now < self.offline[1]

    def receive(self, limit_a: float, now: float) -> None:
        if self.offline_at(now):
            # Unreachable: it keeps its last limit until the profile lapses, then its
            # failsafe current (6 A), higher or lower.
            if now - self.sent_at >= self.validity_s:
                self.limit_a = 6.0
        else:
            self.limit_a, self.sent_at = limit_a, now
        offered = (
            self.config.max_a
            if self.quirk in ("ignores_limits", "uncontrolled")
            else (self.limit_a)
        )
        self.car.offer(offered, now)

    def line_currents(self) -> dict[int, float]:
        per_phase = {p: 0.0 for p in range(3)}
        for k, a in enumerate(self.car.line_currents()):
            if a > 0:
                per_phase[PHASE_NAMES.index(self.wiring[k])] += a
        return per_phase

    def view(self, now: float) -> View:
        lines = self.car.line_currents()
        reported = (True, True, True)
        at = now
        if self.quirk == "l1_only":
            reported, lines = (True, False, False), (lines[0], 0.0, 0.0)
        elif self.quirk == "rounded":
            lines = tuple(float(round(a)) for a in lines)
        elif self.quirk == "absurd":
            lines = (1000.0, 1e39, -1e9)
        elif self.quirk == "stale_report":
            lines, at = self.last_report, now - 60
        if self.quirk != "stale_report":
            self.last_report = lines
        return View(
            online=not self.offline_at(now),
            status="Charging"
            if max(self.car.line_currents()) > 0 or self.limit_a > 0
            else ("SuspendedEVSE"),
            draw_a=lines,
            reading_mono=at,
            lines_reported=reported,
            sent_a=self.limit_a,
            sent_until_mono=self.sent_at + self.validity_s,
            uncontrolled=self.quirk == "uncontrolled",
        )


bays = st.lists(
    st.tuples(
        st.sampled_from(QUIRKS),
        st.sampled_from([1, 3]),  # configured phases
        st.sampled_from(["ABC", "BCA", "CAB"]),
        st.sampled_from([1, 3]),  # car phases
        st.sampled_from([16.0, 32.0]),  # car max
        st.integers(1, 3),  # priority
        st.sampled_from(list(Mode)),
        st.floats(0, 5),  # car lag
        st.tuples(st.integers(0, 60), st.integers(5, 120)),  # offline from, for
    ),
    min_size=1,
    max_size=4,
)


def _build(spec: list) -> list[Bay]:
    out = []
    for i, (quirk, phases, wiring, car_phases, car_max, priority, mode, lag, off) in enumerate(
        spec
    ):
        if quirk == "undeclared_lines":
            phases, car_phases = 1, 3
        config = Charger(
            id=f"c{i}",
            min_a=6,
            max_a=16,
            mode=mode,
            phases=phases,
            priority=priority,
            phase_map=wiring[:phases],
        )
        car = EV(max_a=min(car_max, 16), phases=car_phases, lag_s=lag, energy_wanted_wh=1e9)
        out.append(Bay(config, car, quirk, wiring, (off[0], off[0] + off[1])))
    return out


def _uncontrollable_max(bays: list[Bay]) -> list[float]:
    """Per phase, what the chargers nobody can control may draw at most."""
    load = [0.0, 0.0, 0.0]
    for b in bays:
        if b.quirk in ("ignores_limits", "uncontrolled", "offline"):
            for k in range(b.car.phases):
                load[PHASE_NAMES.index(b.wiring[k])] += b.config.max_a
    return load


@settings(max_examples=100, deadline=None)
@given(
    spec=bays,
    house=st.lists(
        st.tuples(st.floats(0, 10), st.floats(0, 10), st.floats(0, 10)), min_size=1, max_size=4
    ),
    bad_meter=st.sets(st.integers(0, 89), max_size=6),
    bad_value=st.sampled_from([math.nan, math.inf, -1e9, 1e9]),
)
def test_the_physical_grid_current_never_stays_over_the_breaker(spec, house, bad_meter, bad_value):
    bays = _build(spec)
    site = Site(main_breaker_a=BREAKER, voltage_v=230)
    fixed = _uncontrollable_max(bays)
    # A house plus uncontrolled cars over the breaker by themselves: no controller helps.
    house = [
        tuple(min(h, BREAKER - GUARD_MARGIN_A - 1 - fixed[p]) for p, h in enumerate(step))
        for step in house
    ]
    assume(all(min(step) >= 0 for step in house))
    settings_ = ControlSettings(timing=Timing(ramp_up_a_per_s=2.0), stale_after_s=STALE_S)
    controller = Controller(settings_, failsafe_a={b.config.id: 6.0 for b in bays})
    state = controller.initial_state()
    configured = [b.config for b in bays]
    worst_run = run = 0
    lag_cycles = math.ceil(max(b.car.lag_s for b in bays) / CYCLE_S)
    # The cycle that measures it and the one after; a disobeying charger's patience; the
    # lag of the cars cut instead.
    bound = 2 + math.ceil(FOLLOW_S / CYCLE_S) + lag_cycles
    last_good = 0.0
    for tick in range(90):
        now = tick * CYCLE_S
        for b in bays:
            b.car.advance(now)
        step_house = house[(tick // 30) % len(house)]
        grid = list(step_house)
        for b in bays:
            for p, a in b.line_currents().items():
                grid[p] += a
        over = any(a > BREAKER + 1e-6 for a in grid)
        run = run + 1 if over else 0
        worst_run = max(worst_run, run)
        reading = [bad_value] * 3 if tick in bad_meter else grid
        if tick not in bad_meter:
            last_good = now
        meters = [
            Meter("grid", "grid", {f"current_l{i + 1}_a": R(a, now) for i, a in enumerate(reading)})
        ]
        inputs = read_site(meters, site, now, STALE_S)
        live = {b.config.id: b.view(now) for b in bays}
        chargers = charger_inputs(configured, live, None, meters, now, STALE_S, site.phases)
        planned = planning_measurements(inputs.measurements, configured, live, now, site.phases)
        snapshot = Snapshot(site, planned, chargers)
        state, decision = controller.step(state, snapshot, now, inputs.grid_age_s)
        for b, command in zip(bays, decision.commands, strict=True):
            assert math.isfinite(command.limit_a)
            b.receive(command.limit_a, now)
        assert now - last_good < STALE_S or decision.failsafe
    assert worst_run <= bound, (worst_run, bound)


def test_a_guard_cut_is_published_with_its_reason():
    site = Site(main_breaker_a=25)
    controller = Controller(ControlSettings())
    state = controller.initial_state()
    # The model believes 5 A of household; the meter says phase A is at 30 A.
    c = Charger("a", 6, 16, status="Charging", draw_a=(16, 16, 16))
    from gateway.model import Measurements

    snapshot = Snapshot(site, Measurements(grid_current_a=(30, 21, 21)), (c,))
    state, d = controller.step(state, snapshot, 0.0, 0.5)
    assert d.commands[0].reason is Reason.GUARD_CUT
    assert d.commands[0].limit_a <= 16 - 5 - GUARD_MARGIN_A
    assert "phase A +5.0 A" in d.commands[0].detail
