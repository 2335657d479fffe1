"""The cycle: read every source once, allocate once, command every charger, publish once.

`Hub.cycle()` is synchronous on purpose: every source is read without waiting (the meter
tasks and OCPP sessions keep their newest values themselves), so one cycle can never
interleave with another and the register image always matches what was sent. `run()`
calls it every `cycle_s`; a cycle that overruns is reported and the next one starts at
the next tick instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.allocation.controller import (
    Command,
    Controller,
    Decision,
    ExternalLimit,
    limited_site,
)
from gateway.allocation.hold import Written, due, hold_limit
from gateway.config import Config
from gateway.export.state import ChargerState as ExportCharger
from gateway.export.state import ExportState, HoldState
from gateway.inflight import Change, attribute, expired, record
from gateway.inputs import (
    ChargerView,
    ControlState,
    MeterView,
    Overrides,
    SiteInputs,
    charger_inputs,
    control_note,
    control_state,
    planning_measurements,
    read_site,
)
from gateway.model import Charger, Snapshot

log = logging.getLogger(__name__)


class MeterSource(Protocol):
    def latest(self) -> Sequence[MeterView]: ...


class LiveCharger(ChargerView, Protocol):
    voltage_v: float | None
    power_w: float | None
    session_wh: float


class ChargerPort(Protocol):
    def states(self) -> Mapping[str, LiveCharger]: ...

    def set_limit(self, charger_id: str, amps: float, phases: int | None = None) -> None: ...

    def phase_switch_refused(self, charger_id: str) -> bool: ...


class BatteryHoldPort(Protocol):
    """A battery's writable discharge control (`gateway.meters.control.BatteryControl`)."""

    rewrite_s: float
    last: Written | None
    busy: bool
    writes: int
    failures: int
    result: int

    def request(self, limit_w: float | None) -> bool: ...


class SettingsPort(Protocol):
    def layered(self, modbus: Overrides | None) -> Overrides: ...


class ExportPort(Protocol):
    def publish(self, state: ExportState) -> None: ...

    def overrides(self) -> Overrides: ...


@dataclass(frozen=True, slots=True)
class CycleReport:
    number: int
    snapshot: Snapshot
    inputs: SiteInputs
    decision: Decision
    duration_s: float
    external: ExternalLimit | None  # the external site limit applied this cycle
    # Each charger's draw as measured, where the snapshot counts a change in flight.
    measured_a: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


def summary_line(snapshot: Snapshot, inputs: SiteInputs, decision: Decision) -> str:
    """The periodic one-line state of the site for the journal."""
    m = snapshot.measurements
    parts = ["summary: grid " + "/".join(f"{a:.1f}" for a in m.grid_current_a) + " A"]
    if m.pv_power_w is not None:
        parts.append(f"pv {m.pv_power_w:.0f} W")
    if m.battery_soc is not None:
        parts.append(f"battery {m.battery_soc:.0f} % {m.battery_power_w or 0:+.0f} W")
    if decision.failsafe:
        parts.append(f"FAILSAFE (grid data {inputs.grid_age_s:.0f} s old)")
    charging = [c for c in decision.commands if c.limit_a > 0]
    parts.append(
        "chargers "
        + (", ".join(f"{c.id} {c.limit_a:.1f} A" for c in charging) if charging else "all at 0 A")
    )
    return "; ".join(parts)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


class Hub:
    def __init__(
        self,
        config: Config,
        controller: Controller,
        meters: MeterSource,
        chargers: ChargerPort,
        export: ExportPort | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_cycle: Callable[[CycleReport], None] | None = None,
        settings: SettingsPort | None = None,
        holds: Sequence[BatteryHoldPort] = (),
    ) -> None:
        self.config = config
        self.holds = holds  # the battery hold's writers (meters with control = true)
        self.settings = settings  # the owner's runtime settings, under the Modbus overrides
        self.controller = controller
        self.meters = meters
        self.chargers = chargers
        self.export = export
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_cycle = on_cycle
        self.state = controller.initial_state()
        self.cycles = 0
        self._last_limits: dict[str, float] = {}
        self.summary_every_s = 60.0
        self._last_summary: float | None = None
        self._implausible: set[str] = set()
        self._undeclared: set[str] = set()
        self._control: dict[str, ControlState] = {}
        self._inflight: dict[str, Change] = {}  # limit changes no reading shows yet
        # A charger sub-meter is read with the grid: its draw needs no in-flight guess.
        self._metered = {m.charger for m in config.meters if m.role == "charger" and m.charger}

    # -- one cycle --------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        now = self.clock()
        config = self.config
        stale_after = self.controller.settings.stale_after_s
        meter_views = self.meters.latest()
        inputs = read_site(meter_views, config.site, now, stale_after)
        live = self.chargers.states()
        overrides = self.export.overrides() if self.export is not None else None
        if self.settings is not None:
            overrides = self.settings.layered(overrides)
        configured = [c.charger for c in config.chargers]
        # A charger's MeterValues come every meter_interval_s: its reading is stale once
        # the next one is overdue by as long as the grid's may be (not at the due time,
        # when it flickered to "no reading" for the moments a report came late).
        report_age = stale_after + config.ocpp.meter_interval_s
        chargers = charger_inputs(
            configured,
            live,
            overrides,
            meter_views,
            now,
            stale_after,
            config.site.phases,
            report_age,
        )
        self._log_distrust(inputs, configured, chargers)
        self._log_control(configured, live, now)
        measured = chargers
        grid = inputs.measurements.grid_current_a
        self._inflight = {
            i: ch
            for i, ch in self._inflight.items()
            # Offline or uncontrolled, its draw is fixed load: the change is void.
            if i in live
            and live[i].online
            and not live[i].uncontrolled
            and not expired(ch, live[i].reading_mono, now, report_age)
        }
        chargers = attribute(chargers, self._inflight, grid, config.site.phases)
        # Offline chargers with a car keep their share (inputs.planning_measurements).
        planned = planning_measurements(
            inputs.measurements, configured, live, now, config.site.phases
        )
        snapshot = Snapshot(site=config.site, measurements=planned, chargers=chargers)
        external = None
        if overrides is not None and (
            overrides.site_current_a is not None or overrides.site_power_w is not None
        ):
            # The export server has already dropped expired writes: in force this cycle.
            external = ExternalLimit(
                expires_at=math.inf,
                current_a=overrides.site_current_a,
                power_w=overrides.site_power_w,
            )
        self.state, decision = self.controller.step(
            self.state, snapshot, now, inputs.grid_age_s, external
        )
        for command in decision.commands:
            self.chargers.set_limit(command.id, command.limit_a, command.phases)
            if command.phases is not None and self.chargers.phase_switch_refused(command.id):
                self.controller.refuse_phase_switching(command.id)
        if decision.failsafe:
            self._inflight = {}  # no fresh grid reading to follow a change by
        else:
            after = {
                c.id: (c.limit_a, c.phases is not None)
                for c in decision.commands
                if c.id not in self._metered
            }
            # _last_limits: the previous commands until _log_changes below.
            self._inflight = record(self._inflight, chargers, self._last_limits, after, grid, now)
        if self.holds:
            self._hold_battery(snapshot, inputs, decision, now)
        self.cycles += 1
        self._log_changes(decision)
        if self._last_summary is None or now - self._last_summary >= self.summary_every_s:
            self._last_summary = now
            log.info("%s", summary_line(snapshot, inputs, decision))
        if log.isEnabledFor(logging.DEBUG):  # the per-charger dict only when it is logged
            log.debug(
                "cycle %d: grid %s A (age %.1f s), pv %s W, soc %s -> %s",
                self.cycles,
                inputs.measurements.grid_current_a,
                inputs.grid_age_s,
                inputs.measurements.pv_power_w,
                inputs.measurements.battery_soc,
                {c.id: (c.limit_a, c.reason.text) for c in decision.commands},
            )
        drawn = {a.id: a.draw_a for a, b in zip(measured, chargers, strict=True) if a is not b}
        report = CycleReport(
            self.cycles, snapshot, inputs, decision, self.clock() - now, external, drawn
        )
        if self.export is not None:
            self.export.publish(self._export_state(report, live))
        if self.on_cycle is not None:
            self.on_cycle(report)
        return report

    def _log_distrust(
        self, inputs: SiteInputs, configured: Sequence[Charger], chargers: Sequence[Charger]
    ) -> None:
        """One line when readings start or stop being outside physics, and one per
        charger found drawing on lines it is not configured for."""
        implausible = set(inputs.implausible)
        if implausible - self._implausible:
            log.warning(
                "not believed (outside physics, taken as not read): %s",
                ", ".join(sorted(implausible - self._implausible)),
            )
        elif self._implausible and not implausible:
            log.info("meter readings plausible again")
        self._implausible = implausible
        for n, (c, seen) in enumerate(zip(configured, chargers, strict=True)):
            if seen.phases > c.phases and c.id not in self._undeclared:
                self._undeclared.add(c.id)
                log.warning(
                    "charger %s draws on %d lines but is configured for %d: counted on all;"
                    " fix chargers[%d].phases (and phase_map)",
                    c.id,
                    seen.phases,
                    c.phases,
                    n,
                )

    def _log_control(
        self, configured: Sequence[Charger], live: Mapping[str, ChargerView], now: float
    ) -> None:
        """One line when a charger goes out of the gateway's control, one when it is back."""
        for c in configured:
            view = live.get(c.id)
            state, amps = control_state(view, now)
            was = self._control.get(c.id, ControlState.CONTROLLED)
            self._control[c.id] = state
            if state.episode and state.episode != was.episode:
                log.warning("%s", control_note(c, state, amps, view.failsafe_a if view else 0.0))
            elif was.episode and state is ControlState.CONTROLLED:
                log.info("charger %s is controlled again", c.id)

    def _hold_battery(
        self, snapshot: Snapshot, inputs: SiteInputs, decision: Decision, now: float
    ) -> None:
        """Hold the home battery while cars that the policy keeps off it may charge."""
        allowed = {c.id for c in decision.commands if c.limit_a > 0}
        modes = [c.mode for c in snapshot.chargers if c.id in allowed]
        m = snapshot.measurements
        # What the house draws beyond its PV: the battery keeps covering that while held.
        cars_w = sum(sum(c.draw_a) for c in snapshot.chargers) * self.config.site.voltage_v
        house_w = inputs.grid_power_w + (m.battery_power_w or 0.0) - cars_w
        battery, failsafe = self.config.site.battery, decision.failsafe
        limit = hold_limit(battery, m.battery_soc, modes, failsafe, house_w)
        for hold in self.holds:
            if not hold.busy and due(hold.last, limit, now, hold.rewrite_s):
                hold.request(limit)

    def _hold_state(self) -> HoldState:
        if not self.holds:
            return HoldState()
        hold = self.holds[0]  # the config allows one
        last = hold.last
        if last is not None and not last.ok:
            state = 3
        else:
            state = 2 if last is not None and last.limit_w is not None else 1
        return HoldState(
            state=state,
            result=hold.result,
            limit_w=last.limit_w if state == 2 and last is not None else math.nan,
            writes=hold.writes,
            failures=hold.failures,
        )

    def _log_changes(self, decision: Decision) -> None:
        """One line per limit change; meters and the controller log their own transitions."""
        for command in decision.commands:
            if self._last_limits.get(command.id) != command.limit_a:
                log.info(
                    "charger %s: %.1f A (%s)",
                    command.id,
                    command.limit_a,
                    command.detail or command.reason.text,
                )
                self._last_limits[command.id] = command.limit_a

    def export_state(self, report: CycleReport) -> ExportState:
        """The register image's content for `report` (the web API's site state)."""
        return self._export_state(report, self.chargers.states())

    def _export_state(self, report: CycleReport, live: Mapping[str, LiveCharger]) -> ExportState:
        site = self.config.site
        m = report.inputs.measurements
        allocation = report.decision.allocation
        volts = sum(m.voltage_v) / len(m.voltage_v) if m.voltage_v else site.voltage_v
        phase_volts = m.voltage_v or (site.voltage_v,) * site.phases
        commands: dict[str, Command] = {c.id: c for c in report.decision.commands}
        chargers = []
        ev_power = 0.0
        now = self.clock()
        for c in report.snapshot.chargers:
            view = live.get(c.id)
            control, assumed = control_state(view, now)
            alloc = allocation.by_id.get(c.id) if allocation is not None else None
            command = commands.get(c.id)
            held = self.state.chargers.get(c.id)
            phase = held.phase if held is not None and command and command.phases else None
            drawn = report.measured_a.get(c.id, c.draw_a)
            power = view.power_w if view is not None and view.power_w is not None else None
            if power is None:
                power = sum(drawn) * volts
            ev_power += power
            chargers.append(
                ExportCharger(
                    id=c.id,
                    online=view is not None and view.online,
                    status=c.status,
                    phases=alloc.phases if alloc is not None else c.phases,
                    mode=c.mode,
                    reason=command.reason if command is not None else None,
                    allocated_a=command.limit_a if command is not None else math.nan,
                    target_a=alloc.target_a if alloc is not None else math.nan,
                    current_a=drawn,
                    power_w=power,
                    session_wh=view.session_wh if view is not None else None,
                    min_a=c.min_a,
                    max_a=c.max_a,
                    control_state=control,
                    assumed_a=assumed,
                    phase_set=None if phase is None else phase.phases,
                    phase_switches=None if phase is None else phase.switches,
                )
            )
        household = allocation.site.household_a if allocation is not None else None
        headroom = allocation.site.headroom_a if allocation is not None else None
        stale = report.inputs.grid_age_s > self.controller.settings.stale_after_s
        in_force = limited_site(site, report.external)
        return ExportState(
            cycle=report.number,
            updated_unix=self.wall_clock(),
            cycle_time_ms=report.duration_s * 1000,
            breaker_limit_a=site.main_breaker_a,
            breaker_limit_w=site.main_breaker_a * volts * site.phases,
            meters_ok=not report.inputs.failing_meters,
            ocpp_ok=all(v.online for v in live.values()) and len(live) > 0,
            failsafe=report.decision.failsafe,
            external_limit=report.decision.external_limit,
            data_stale=stale,
            grid_power_w=report.inputs.grid_power_w,
            grid_power_phase_w=tuple(
                a * v for a, v in zip(m.grid_current_a, phase_volts, strict=True)
            ),
            grid_current_a=m.grid_current_a,
            voltage_v=m.voltage_v or (math.nan,) * site.phases,
            pv_power_w=_nan(m.pv_power_w),
            battery_power_w=_nan(m.battery_power_w),
            battery_soc=_nan(m.battery_soc),
            net_load_a=household or (math.nan,) * site.phases,
            net_load_power_w=sum(household) * volts if household else math.nan,
            # No PV or battery meter: nothing produced or stored on site.
            household_consumption_w=report.inputs.grid_power_w
            + (m.pv_power_w or 0.0)
            + (m.battery_power_w or 0.0)
            - ev_power,
            ev_power_w=ev_power,
            headroom_a=headroom or (math.nan,) * site.phases,
            current_limit_a=in_force.main_breaker_a,
            power_limit_w=_nan(in_force.max_import_w),
            chargers=tuple(chargers),
            battery_hold=self._hold_state(),
        )

    # -- the loop ---------------------------------------------------------------------

    async def _first_grid_reading(self, stop: asyncio.Event) -> None:
        """Start cycling on the first grid reading, or after the stale limit without one.

        Until then the chargers hold the failsafe profile they got on connecting; a
        first cycle without data would only announce a failsafe nobody needs.
        """
        deadline = self.clock() + self.controller.settings.stale_after_s
        site = self.config.site
        while not stop.is_set() and self.clock() < deadline:
            inputs = read_site(self.meters.latest(), site, self.clock(), math.inf)
            if inputs.grid_age_s != math.inf:
                return
            await asyncio.sleep(0.05)

    async def run(
        self, stop: asyncio.Event, cycle_s: float, on_healthy: Callable[[], None]
    ) -> None:
        """Cycle every `cycle_s` until `stop` is set; `on_healthy` after each good cycle."""
        await self._first_grid_reading(stop)
        next_tick = self.clock()
        while not stop.is_set():
            try:
                report = self.cycle()
            except Exception:
                # A bug in one cycle must not end control; the watchdog sees no heartbeat.
                log.exception("cycle failed")
            else:
                if report.duration_s > cycle_s:
                    log.warning(
                        "cycle %d took %.0f ms, longer than the %.0f ms cycle",
                        report.number,
                        report.duration_s * 1000,
                        cycle_s * 1000,
                    )
                on_healthy()
            next_tick += cycle_s
            now = self.clock()
            if next_tick < now:  # overran: skip the missed ticks rather than stacking them
                next_tick = now + cycle_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=next_tick - now)
