"""The simulator's outputs: the summary text and the full time series as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from gateway.model import PHASE_NAMES
from gateway.sim.simulation import Result, Trace


def clock(seconds: float) -> str:
    """HH:MM:SS from seconds after midnight (hours go past 24 on the next day)."""
    s = round(seconds)
    day = f" +{s // 86400}d" if s >= 86400 else ""
    return f"{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}{day}"


@dataclass(frozen=True, slots=True)
class Event:
    time_s: float
    charger: int  # index in the scenario's chargers
    kind: str  # "arrive", "full" or "leave"


def visit_events(result: Result) -> list[Event]:
    """Each visit's arrival, full and departure within the run, in time order."""
    end_s = result.scenario.start_s + result.scenario.duration_s
    events = []
    for k, c in enumerate(result.tally.chargers):
        for v in c.visits:
            events.append(Event(v.session.arrive_s, k, "arrive"))
            if v.full_s is not None:
                events.append(Event(v.full_s, k, "full"))
            if v.session.leave_s <= end_s:
                events.append(Event(v.session.leave_s, k, "leave"))
    return sorted(events, key=lambda e: e.time_s)


def summary(result: Result) -> str:
    sc, tally = result.scenario, result.tally
    lines = [
        f"{sc.path}: {clock(sc.start_s)} to {clock(sc.start_s + sc.duration_s)} "
        f"({sc.duration_s / 3600:g} h) at {sc.cycle_s:g} s cycles",
        f"  {result.cycles} cycles in {result.wall_s:.1f} s "
        f"({sc.duration_s / max(result.wall_s, 1e-9):,.0f} simulated s per wall s)",
        "",
        "  kWh per charger: wanted by its cars, got, and from PV / battery / grid;",
        "  starts and limit changes per hour a car was there",
        f"  {'charger':<12} {'mode':<9} {'wanted':>7} {'got':>7} {'PV':>7} {'battery':>7} "
        f"{'grid':>7} {'starts':>6} {'starts/h':>8} {'stops':>5} {'changes/h':>9}",
    ]
    for c in tally.chargers:
        lines.append(
            f"  {c.id:<12} {c.mode.value:<9} {c.needed_wh / 1000:>7.2f} "
            f"{c.energy_wh / 1000:>7.2f} {c.pv_wh / 1000:>7.2f} {c.battery_wh / 1000:>7.2f} "
            f"{c.grid_wh / 1000:>7.2f} {c.starts:>6} {c.starts_per_h:>8.1f} {c.stops:>5} "
            f"{c.changes_per_h:>9.1f}"
        )
    lines += ["", "  visits:"]
    end_s = sc.start_s + sc.duration_s
    for c in tally.chargers:
        for v in c.visits:
            s = v.session
            left = clock(s.leave_s) if s.leave_s <= end_s else "(still there)"
            if v.full_s is not None:
                outcome = f"full at {clock(v.full_s)}"
            else:
                outcome = "not full" + (" when it left" if s.leave_s <= end_s else "")
            lines.append(
                f"    {c.id:<12} {clock(s.arrive_s)} to {left:<13} wanted "
                f"{v.needed_wh / 1000:6.2f} kWh, got {v.delivered_wh / 1000:6.2f} kWh, {outcome}"
            )
    used = tally.used_pct
    used_text = f"{used:.0f} %" if used is not None else "-"
    cars_wh = sum(c.energy_wh for c in tally.chargers)
    lines += [
        "",
        f"  cars: {cars_wh / 1000:.2f} kWh, from PV {tally.pv_to_cars_wh / 1000:.2f}, "
        f"battery {tally.battery_to_cars_wh / 1000:.2f}, grid {tally.grid_to_cars_wh / 1000:.2f}",
        f"  PV surplus: {tally.surplus_wh / 1000:.2f} kWh, usable by cars "
        f"{tally.usable_wh / 1000:.2f} kWh, used by cars {used_text}",
        f"  exported: {tally.exported_wh / 1000:.2f} kWh "
        f"({tally.exported_waiting_wh / 1000:.2f} kWh while a car could have taken it)",
        f"  grid import: {tally.imported_wh / 1000:.2f} kWh: into cars "
        f"{tally.grid_to_cars_wh / 1000:.2f}, house "
        f"{max(0.0, tally.imported_wh - tally.grid_to_cars_wh) / 1000:.2f}; "
        f"during solar/excess charging {tally.solar_import_wh / 1000:.2f} kWh",
    ]
    if tally.battery_min_soc is not None:
        soc_min = sc.site.battery.soc_min if sc.site.battery is not None else None
        below = (
            f", {tally.below_soc_min_s / 60:.0f} min below soc_min {soc_min:g} %"
            if soc_min is not None
            else ""
        )
        lines.append(f"  battery: lowest SOC {tally.battery_min_soc:.1f} %{below}")
    lines.append(
        f"  breaker {sc.site.main_breaker_a:g} A; reaction time {tally.reaction_s:g} s "
        "(one cycle + car lag):"
    )
    for name, e in zip(PHASE_NAMES, tally.phases, strict=False):
        if e.peak_a <= 0:
            lines.append(f"    phase {name}: never over")
        else:
            lines.append(
                f"    phase {name}: peak {e.peak_a:.1f} A over, longest {e.longest_s:g} s; "
                f"{e.beyond_cycle_as:.1f} A·s beyond one cycle, "
                f"{e.beyond_as:.1f} A·s beyond the reaction time"
            )
    if any(e.peak_a > 0 for e in tally.phases):
        lines += [
            "    (a load step is over the breaker until the next cycle sees it and the cars",
            "    follow: brief excursions within the reaction time are expected, and a fuse",
            "    carries them; A·s beyond the reaction time would be a control fault)",
        ]
    return "\n".join(lines)


def write_csv(result: Result, out: TextIO) -> None:
    trace = result.trace
    assert trace is not None
    ids = [c.id for c in result.scenario.chargers]
    phases = PHASE_NAMES[: result.scenario.site.phases]
    writer = csv.writer(out)
    writer.writerow(
        ["time_s", "clock"]
        + [f"household_w_{p}" for p in phases]
        + ["pv_w", "battery_w", "battery_soc", "cars_w"]
        + [f"grid_a_{p}" for p in phases]
        + [f"{i}_{what}" for i in ids for what in ("limit_a", "draw_a", "reason")]
    )
    for row in _rows(trace):
        writer.writerow(row)


def _rows(trace: Trace) -> Iterator[list[str]]:
    for k, now in enumerate(trace.times):
        soc = trace.battery_soc[k]
        per_charger = []
        for limit, draw, reason in zip(
            trace.limit_a[k], trace.draw_a[k], trace.reason[k], strict=True
        ):
            per_charger += [f"{limit:g}", f"{draw:.2f}", reason]
        yield (
            [f"{now:g}", clock(now)]
            + [f"{w:.0f}" for w in trace.household_w[k]]
            + [
                f"{trace.pv_w[k]:.0f}",
                f"{trace.battery_w[k]:.0f}",
                "" if soc is None else f"{soc:.2f}",
                f"{trace.cars_w[k]:.0f}",
            ]
            + [f"{a:.2f}" for a in trace.grid_a[k]]
            + per_charger
        )
