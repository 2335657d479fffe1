"""The controller's rules over time, each in isolation (other timings set to zero)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from gateway.allocation.controller import Controller, Decision, ExternalLimit
from gateway.allocation.timing import ControlSettings, Timing
from gateway.model import Charger, Measurements, Reason, Site, Snapshot
from tests.allocation_helpers import BATTERY, charger, site

# No delays, no pause, instant ramp: each test switches on only the rule it checks.
NONE = Timing(
    ramp_up_a_per_s=1000,
    dead_band_a=0,
    start_delay_s=0,
    stop_delay_s=0,
    min_pause_s=0,
    excess_hold_s=0,
)


class Run:
    """A controller and its state, stepped like the hub does."""

    def __init__(self, s: Site, *chargers: Charger, timing: Timing = NONE, **settings) -> None:
        self.site = s
        self.chargers = chargers
        self.controller = Controller(
            ControlSettings(timing=timing, **settings), failsafe_a={"c1": 8.0}
        )
        self.state = self.controller.initial_state()

    def step(
        self,
        now: float,
        grid: tuple[float, ...],
        *,
        soc: float | None = None,
        age: float = 1.0,
        external: ExternalLimit | None = None,
        **charger_changes,
    ) -> Decision:
        chargers = tuple(c._replace(**charger_changes) for c in self.chargers)
        m = Measurements(grid_current_a=grid, battery_soc=soc, battery_power_w=0.0 if soc else None)
        snapshot = Snapshot(site=self.site, measurements=m, chargers=chargers)
        self.state, decision = self.controller.step(self.state, snapshot, now, age, external)
        return decision

    def limit(self, now: float, grid: tuple[float, ...], **kw) -> float:
        return self.step(now, grid, **kw).commands[0].limit_a

    def started(self, now: float, grid: tuple[float, ...], **kw) -> float:
        """A start goes to the minimum; with the instant ramp the next cycle is at target."""
        self.step(now - 1, grid, **kw)
        return self.limit(now, grid, **kw)


EXPORT_9 = (-9.0, -9.0, -9.0)
NO_SUN = (5.0, 5.0, 5.0)


def test_fuse_reduction_goes_out_the_same_cycle_whatever_the_timers():
    slow = Timing(ramp_up_a_per_s=0.1, dead_band_a=2, stop_delay_s=600, min_pause_s=600)
    run = Run(site(), charger("c1", max_a=16), timing=slow)
    assert run.limit(0, (5, 5, 5)) == 6.0  # a start goes to the minimum at once
    for t in range(1, 200):
        run.limit(t, (5, 5, 5))
    assert run.limit(200, (5, 5, 5)) == 16.0  # ramped up slowly
    # A kettle: 12 A more on every phase leaves 8 A; 0.5 A less than that is also sent.
    d = run.step(201, (17, 17, 17))
    assert d.commands[0].limit_a == 8.0
    assert d.commands[0].reason is Reason.BREAKER_LIMIT
    assert run.limit(202, (17.5, 17.5, 17.5)) == 7.5


def test_a_hold_never_outlasts_the_breaker():
    """A Solar charger in its stop delay holds its minimum only while the breaker can."""
    run = Run(site(), charger("c1", mode="solar"), timing=replace(NONE, stop_delay_s=600))
    assert run.started(0, EXPORT_9) == 9.0
    d = run.step(1, (10, 10, 10))  # sun gone, 15 A free: hold the minimum
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.STOP_DELAY)
    d = run.step(2, (21, 21, 21))  # only 4 A free: cut at once despite 599 s of delay left
    assert (d.commands[0].limit_a, d.commands[0].reason) == (0.0, Reason.NO_CAPACITY)


def test_a_hold_does_not_take_capacity_from_another_charger():
    s = site(breaker=25)
    run = Run(
        s,
        charger("c1", mode="solar", priority=2),
        charger("c2", mode="standard", priority=1),
        timing=replace(NONE, stop_delay_s=600),
    )
    run.step(-1, (-22, -22, -22))
    d = run.step(0, (-22, -22, -22))
    assert [c.limit_a for c in d.commands] == [6.0, 16.0]
    # No sun, household 2 A: 7 A left after c2's 16 A, so c1 holds its minimum.
    d = run.step(1, (2, 2, 2))
    assert [c.limit_a for c in d.commands] == [6.0, 16.0]
    # Household 5 A: only 4 A left; c2 keeps its 16 A and c1's hold ends.
    d = run.step(2, (5, 5, 5))
    assert [c.limit_a for c in d.commands] == [0.0, 16.0]


def test_increases_ramp_and_respect_the_dead_band():
    timing = replace(NONE, ramp_up_a_per_s=0.5, dead_band_a=0.5)
    run = Run(site(), charger("c1", max_a=16), timing=timing)
    assert run.limit(0, NO_SUN) == 6.0
    d = run.step(1, NO_SUN)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.5, Reason.RAMPING)
    assert d.commands[0].detail == "ramping up to 16 A"
    limits = [run.limit(t, NO_SUN) for t in range(2, 22)]
    assert limits[:3] == [7.0, 7.5, 8.0]
    assert limits[-1] == 16.0
    # Half-second cycles: 0.25 A per cycle is below the dead band, so every second cycle.
    run = Run(site(), charger("c1", max_a=16), timing=timing)
    limits = [run.limit(t / 2, NO_SUN) for t in range(6)]
    assert limits == [6.0, 6.0, 6.5, 6.5, 7.0, 7.0]
    # An increase smaller than the dead band is not sent.
    run = Run(site(), charger("c1", max_a=16), timing=timing)
    assert [run.limit(t, (15, 15, 15)) for t in range(10)][-1] == 10.0
    assert run.limit(10, (14.7, 14.7, 14.7)) == 10.0
    assert run.limit(11, (14.4, 14.4, 14.4)) == 10.5


def test_a_small_reduction_waits_for_the_dead_band_unless_the_breaker_needs_it():
    run = Run(site(), charger("c1", mode="solar"), timing=replace(NONE, dead_band_a=0.5))
    assert run.started(0, EXPORT_9) == 9.0
    assert run.limit(1, (-8.7, -8.7, -8.7)) == 9.0  # 0.3 A less surplus: not sent
    assert run.limit(2, (-8.5, -8.5, -8.5)) == 8.5  # 0.5 A less: sent
    # On a site whose breaker is full a small reduction goes out at once.
    run = Run(site(), charger("c1", max_a=16), timing=replace(NONE, dead_band_a=0.5))
    assert run.started(0, (13, 13, 13)) == 12.0
    d = run.step(1, (13.2, 13.2, 13.2))
    assert (d.commands[0].limit_a, d.commands[0].reason) == (11.8, Reason.BREAKER_LIMIT)


def test_start_delay_waits_until_surplus_has_carried_the_minimum_long_enough():
    run = Run(site(), charger("c1", mode="solar"), timing=replace(NONE, start_delay_s=60))
    d = run.step(0, EXPORT_9)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (0.0, Reason.START_DELAY)
    assert run.step(18, EXPORT_9).commands[0].detail == "solar: waiting 42 s to start"
    assert run.limit(30, (-3, -3, -3)) == 0.0  # surplus fell short: the wait restarts
    assert run.limit(40, EXPORT_9) == 0.0
    assert run.limit(99, EXPORT_9) == 0.0
    assert run.limit(100, EXPORT_9) == 9.0


def test_stop_delay_holds_the_minimum_then_stops():
    run = Run(site(), charger("c1", mode="solar"), timing=replace(NONE, stop_delay_s=180))
    assert run.started(0, EXPORT_9) == 9.0
    d = run.step(10, (-2, -2, -2))
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.STOP_DELAY)
    assert d.commands[0].detail == "solar: holding 6 A, stopping in 180 s"
    assert run.limit(100, (-2, -2, -2)) == 6.0
    assert run.limit(150, (-7, -7, -7)) == 7.0  # surplus back: the timer restarts
    assert run.limit(160, (-2, -2, -2)) == 6.0
    assert run.limit(339, (-2, -2, -2)) == 6.0
    assert run.limit(340, (-2, -2, -2)) == 0.0
    assert run.state.chargers["c1"].stops == 1


def test_minimum_pause_after_a_stop():
    run = Run(site(), charger("c1", mode="solar"), timing=replace(NONE, min_pause_s=180))
    assert run.started(0, EXPORT_9) == 9.0
    assert run.limit(10, NO_SUN) == 0.0
    d = run.step(11, EXPORT_9)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (0.0, Reason.MIN_PAUSE)
    assert d.commands[0].detail == "solar: paused after stop, 179 s left"
    assert run.limit(189, EXPORT_9) == 0.0
    assert run.limit(190, EXPORT_9) == 9.0
    assert (run.state.chargers["c1"].starts, run.state.chargers["c1"].stops) == (2, 1)


def test_excess_hold_runs_out_once_export_plus_own_draw_stays_below_the_threshold():
    s = site(phases=1, excess_threshold_w=2300)
    c = charger("c1", mode="excess", phases=1, phase_map="A")
    run = Run(s, c, timing=replace(NONE, excess_hold_s=900))
    assert run.started(0, (-18,)) == 8.0  # (4140 - 2300) / 230
    # The car draws 8 A: export 10 A (2300 W) is not above the threshold any more...
    d = run.step(1, (-10,), draw_a=(8.0, 0, 0))
    assert d.commands[0].limit_a == 8.0  # ...but the allocator counts the car's own draw
    # At its minimum (1380 W) with 2 A (460 W) exported, the sum is below the threshold:
    # the hold is not renewed (before issue #13 the car's minimum was added to export
    # clamped at 0, so a car whose minimum exceeds the threshold was held for ever).
    for t in (2, 500, 900):
        d = run.step(t, (-2,), draw_a=(6.0, 0, 0))
        assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.EXCESS_HOLD)
    assert d.commands[0].detail == "excess: holding 6 A for 1 s"
    assert run.limit(901, (-2,), draw_a=(6.0, 0, 0)) == 0.0


def test_an_excess_hold_never_imports():
    s = site(phases=1, excess_threshold_w=2300)
    run = Run(
        s,
        charger("c1", mode="excess", phases=1, phase_map="A"),
        timing=replace(NONE, excess_hold_s=900),
    )
    assert run.started(0, (-18,)) == 8.0
    assert run.limit(1, (0.0,), draw_a=(6.0, 0, 0)) == 6.0  # export 0: held
    d = run.step(2, (1.0,), draw_a=(6.0, 0, 0))  # 230 W from the grid for the car
    assert d.commands[0].limit_a == 0.0
    assert d.commands[0].detail == "excess: stopped, the site would import for it"


def test_battery_soc_hysteresis_band():
    """Solar needs SOC at target (80 %); once there it keeps going down to 77 %."""
    s = site(battery=BATTERY)
    run = Run(s, charger("c1", mode="solar"))
    assert run.limit(0, EXPORT_9, soc=78) == 0.0  # rising: below target
    # At target the export is Solar's (the battery's discharge never is, issue #13).
    assert run.limit(2, EXPORT_9, soc=80) == 9.0
    assert run.limit(3, EXPORT_9, soc=78) == 9.0  # falling: still "above"
    assert run.limit(4, EXPORT_9, soc=77) == 9.0  # at the lowered target
    d = run.step(5, EXPORT_9, soc=76.9)
    assert (d.commands[0].limit_a, d.commands[0].reason) == (0.0, Reason.BATTERY_BELOW_TARGET)
    assert run.limit(6, EXPORT_9, soc=79) == 0.0  # rising again: needs the target


def test_stale_grid_data_puts_active_chargers_at_failsafe_and_back(caplog):
    caplog.set_level(logging.INFO, logger="gateway.allocation.controller")
    run = Run(
        site(),
        charger("c1", max_a=16),
        charger("c2", status="Available"),
        charger("c3", mode="solar"),
        stale_after_s=10,
    )
    run.limit(-200, NO_SUN)
    assert run.limit(0, NO_SUN) == 16.0  # ramped up from its minimum
    d = run.step(1, NO_SUN, age=10)
    assert not d.failsafe
    d = run.step(2, NO_SUN, age=10.5)
    assert d.failsafe and d.allocation is None
    c1, c2, c3 = d.commands
    assert (c1.limit_a, c1.reason, c1.failsafe) == (8.0, Reason.FAILSAFE_STALE, True)
    assert c1.detail == "failsafe 8 A: meter data 10 s old"
    assert (c2.limit_a, c2.reason) == (0.0, Reason.NOT_ACTIVE)
    # Failsafe is min(last command, failsafe): a charger held at 0 A is not raised.
    assert (c3.limit_a, c3.reason) == (0.0, Reason.FAILSAFE_STALE)
    assert run.step(3, NO_SUN, age=math.inf).commands[0].detail == "failsafe 8 A: no meter data"
    d = run.step(4, NO_SUN, age=0.5)  # fresh data: normal control again
    assert not d.failsafe
    assert (d.commands[0].reason, d.commands[0].failsafe) == (Reason.STANDARD, False)
    # One log line when it starts, one when it ends.
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "grid data stale: 3 charger(s) at their failsafe current",
        "grid data fresh again: normal control resumes",
    ]


def test_external_limit_caps_the_grid_until_it_expires(caplog):
    caplog.set_level(logging.INFO, logger="gateway.allocation.controller")
    run = Run(site(), charger("c1", max_a=16))
    limit = ExternalLimit(expires_at=100, current_a=15)
    run.step(-1, NO_SUN, external=limit)
    d = run.step(0, NO_SUN, external=limit)
    assert d.external_limit
    assert (d.commands[0].limit_a, d.commands[0].reason) == (10.0, Reason.EXTERNAL_LIMIT)
    assert d.commands[0].detail == "external site limit 15 A, 100 s left"
    # The limit caps the grid only: PV still counts.
    assert run.limit(50, (-2, -2, -2), external=limit) == 16.0
    d = run.step(99, NO_SUN, external=limit)
    assert d.commands[0].limit_a == 10.0
    d = run.step(100, NO_SUN, external=limit)  # expired
    assert not d.external_limit and d.commands[0].limit_a == 16.0
    assert [r.getMessage() for r in caplog.records] == [
        "external site limit 15 A, 101 s left",
        "external site limit ended",
    ]
    # A limit above the breaker never raises it; a power limit caps the total import.
    assert run.limit(101, NO_SUN, external=ExternalLimit(200, current_a=40)) == 16.0
    power = ExternalLimit(200, power_w=3 * 230 * 12)
    assert run.limit(102, NO_SUN, external=power) == 7.0


def test_suspended_ev_idle_time_releases_the_charger():
    s = site(breaker=25)._replace(release_after_s=60)
    run = Run(s, charger("c1", status="SuspendedEV"), charger("c2", priority=2))
    d = run.step(0, (13, 13, 13))  # 12 A free
    assert [c.limit_a for c in d.commands] == [6.0, 6.0]
    d = run.step(59, (13, 13, 13))
    assert [c.limit_a for c in d.commands] == [6.0, 6.0]
    d = run.step(60, (13, 13, 13))
    assert [c.reason for c in d.commands] == [Reason.RELEASED, Reason.BREAKER_LIMIT]
    assert [c.limit_a for c in d.commands] == [0.0, 12.0]
    # The car draws again: no longer idle, it takes part as before.
    d = run.step(61, (13, 13, 13), draw_a=(0.0, 0.0, 0.0), status="Charging")
    assert d.commands[0].reason is not Reason.RELEASED


def test_eco_follows_surplus_only_after_the_start_delay_and_until_the_stop_delay():
    timing = replace(NONE, start_delay_s=60, stop_delay_s=180)
    run = Run(site(), charger("c1", mode="eco"), timing=timing)
    d = run.step(0, (-12, -12, -12))
    assert (d.commands[0].limit_a, d.commands[0].reason) == (6.0, Reason.START_DELAY)
    assert d.commands[0].detail == "eco: minimum, waiting 60 s to follow surplus"
    assert run.limit(60, (-12, -12, -12)) == 12.0  # ramp: instant
    assert run.limit(70, NO_SUN) == 6.0  # down at once, to the minimum
    assert run.limit(100, (-12, -12, -12)) == 12.0  # within the stop delay: no new wait
    assert run.limit(110, NO_SUN) == 6.0
    assert run.limit(290, NO_SUN) == 6.0  # surplus short for 180 s: stops following
    assert run.limit(291, (-12, -12, -12)) == 6.0


def test_a_car_leaving_is_not_a_stop():
    run = Run(site(), charger("c1"), timing=replace(NONE, min_pause_s=600))
    assert run.started(0, NO_SUN) == 16.0
    assert run.limit(1, NO_SUN, status="Available") == 0.0
    assert run.limit(2, NO_SUN) == 16.0  # the next car starts at once
    assert run.state.chargers["c1"].stops == 0
