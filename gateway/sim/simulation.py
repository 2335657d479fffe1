"""Run a scenario: the site model and the real controller (and allocator), cycle by cycle.

Time is simulated, so a day takes seconds. The meters are always fresh here; the
controller sees exactly what the hub would hand it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from gateway.allocation.controller import Controller, Decision
from gateway.sim.scenario import Scenario
from gateway.sim.site import Reading, SiteModel
from gateway.sim.tally import ChargerTally, Tally


@dataclass(slots=True)
class Trace:
    """The full time series, one entry per cycle (kept only when asked for)."""

    times: list[float] = field(default_factory=list)
    household_w: list[tuple[float, ...]] = field(default_factory=list)
    pv_w: list[float] = field(default_factory=list)
    battery_w: list[float] = field(default_factory=list)
    battery_soc: list[float | None] = field(default_factory=list)
    cars_w: list[float] = field(default_factory=list)  # all cars together
    grid_a: list[tuple[float, ...]] = field(default_factory=list)
    limit_a: list[tuple[float, ...]] = field(default_factory=list)  # per charger
    draw_a: list[tuple[float, ...]] = field(default_factory=list)  # per charger, highest line
    reason: list[tuple[str, ...]] = field(default_factory=list)  # per charger, detail text


@dataclass(slots=True)
class Result:
    scenario: Scenario
    tally: Tally
    cycles: int
    wall_s: float
    trace: Trace | None


def simulate(scenario: Scenario, trace: bool = False) -> Result:
    """Run the whole scenario; `trace` keeps every cycle for `--csv` / `--plot`."""
    controller = Controller.for_chargers(scenario.control, scenario.chargers)
    model = SiteModel(
        scenario.site,
        [c.charger for c in scenario.chargers],
        scenario.sessions,
        scenario.household,
        scenario.pv,
        # The model changes its battery; the scenario stays as read.
        None if scenario.battery is None else replace(scenario.battery),
    )
    lag = max((s.lag_s for s in scenario.sessions), default=0.0)
    tally = Tally(
        site=scenario.site,
        reaction_s=scenario.cycle_s + lag,
        chargers=[ChargerTally(c.id, c.charger.mode) for c in scenario.chargers],
    )
    record = Trace() if trace else None
    state = controller.initial_state()
    dt = scenario.cycle_s
    cycles = max(1, round(scenario.duration_s / dt))
    started = time.perf_counter()
    for i in range(cycles):
        now = scenario.start_s + i * dt
        snapshot, reading = model.measure(now)
        state, decision = controller.step(state, snapshot, now, grid_age_s=0.0)
        model.apply(decision.commands, now)
        tally.add(now, dt, reading, model.bays, decision.commands)
        if record is not None:
            _record(record, now, reading, model, decision)
    model.measure(scenario.start_s + cycles * dt)  # count the last cycle's energy
    wall = time.perf_counter() - started
    tally.finish(model.bays)
    for charger_tally in tally.chargers:
        s = state.chargers.get(charger_tally.id)
        if s is not None:
            charger_tally.starts, charger_tally.stops = s.starts, s.stops
    return Result(scenario, tally, cycles, wall, record)


def _record(trace: Trace, now: float, r: Reading, model: SiteModel, decision: Decision) -> None:
    trace.times.append(now)
    trace.household_w.append(r.household_w)
    trace.pv_w.append(r.pv_w)
    trace.battery_w.append(r.battery_w)
    trace.battery_soc.append(r.battery_soc)
    volts = model.site.voltage_v
    trace.cars_w.append(sum(bay.power_w(volts) for bay in model.bays))
    trace.grid_a.append(r.grid_a)
    trace.limit_a.append(tuple(c.limit_a for c in decision.commands))
    trace.draw_a.append(tuple(max(bay.line_currents()) for bay in model.bays))
    trace.reason.append(tuple(c.detail for c in decision.commands))
