"""`evse-gateway demo`: the real gateway against a simulated site on 127.0.0.1.

The site (`gateway/sim/demo/site.toml`: a sunny day, a house, a battery, four cars) runs
live: its grid meter and hybrid inverter are real Modbus TCP servers, its chargers real
OCPP clients (two 1.6, two 2.0.1). The gateway (`gateway/sim/demo/gateway.toml`) polls,
allocates and commands them exactly as it would a real site, and a table shows every
cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from importlib.resources import files
from typing import TYPE_CHECKING, TextIO

from gateway.config import load_runnable_config
from gateway.hub import CycleReport
from gateway.sim.scenario import load_scenario
from gateway.sim.site import Premises

if TYPE_CHECKING:
    from gateway.sim.live import LiveSite

DEMO = files("gateway.sim") / "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument(
        "--speed", type=float, default=30.0, help="the simulated day runs X times faster (30)"
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="use any free ports instead of those in gateway/sim/demo/gateway.toml",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=None,
        help="print the table every N cycles (default: 1 on a terminal, 20 into a pipe or file)",
    )


def _clock(seconds: float) -> str:
    seconds %= 86400
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


LEGEND = (
    "signs: grid + import / - export (A per phase); battery + discharge / - charge; "
    "household = the house's own consumption"
)
EVENTS_SHOWN = 8
# What to watch for, printed at the start (README's demo section tells it at length).
STORY = (
    "the day: garage (standard) charges at once; carport (eco) holds its minimum until the\n"
    "battery is at 80 %, then follows the sun; van (excess) runs on real export only;\n"
    "visitor (solar) runs on the sun, and when that cannot carry 6 A on 3 phases it is\n"
    "switched to 1 phase instead of stopped (the cloud at 13:00), and back to 3 after"
)


class Table:
    """The live table: site figures, one line per charger, and the latest events.

    On a terminal the table is redrawn in place every `every` cycles; into a pipe or a
    file only the events (a charger's limit or status changing) are printed, with the
    table every `every` cycles.
    """

    def __init__(self, live: LiveSite, out: TextIO, every: int | None) -> None:
        self.live = live
        self.out = out
        self.clear = out.isatty()
        self.every = max(1, every if every is not None else (1 if self.clear else 20))
        self.events: list[str] = []
        self._seen: dict[str, tuple[float, str, int | None]] = {}
        self.cycles = 0

    def _note_events(self, report: CycleReport) -> list[str]:
        commands = {c.id: c for c in report.decision.commands}
        new = []
        for charger in report.snapshot.chargers:
            command = commands[charger.id]
            before = self._seen.get(charger.id)
            now = (command.limit_a, charger.status, command.phases)
            self._seen[charger.id] = now
            if before is None or before == now:
                continue
            what = []
            if before[1] != now[1]:
                what.append(f"{before[1]} -> {now[1]}")
            if before[0] != now[0]:
                what.append(f"{before[0]:.1f} -> {now[0]:.1f} A")
            if before[2] != now[2]:
                what.append(f"{before[2]} -> {now[2]} phase(s)")
            why = command.detail or command.reason.text
            new.append(f"{_clock(self.live.time_of_day_s)} {charger.id}: {', '.join(what)} ({why})")
        self.events = (self.events + new)[-EVENTS_SHOWN:]
        return new

    def __call__(self, report: CycleReport) -> None:
        self.cycles = report.number
        live = self.live
        reading = live.reading
        if reading is None:
            return
        new_events = self._note_events(report)
        if not self.clear and new_events:
            print("\n".join(new_events), file=self.out, flush=True)
        if report.number % self.every:
            return
        m = report.snapshot.measurements
        lines = [
            f"cycle {report.number}  site time {_clock(live.time_of_day_s)}  "
            f"(allocated in {report.duration_s * 1000:.1f} ms)"
            + ("  FAILSAFE: meter data stale" if report.decision.failsafe else ""),
            f"household {sum(reading.household_w) / 1000:5.2f} kW   "
            f"PV {reading.pv_w / 1000:5.2f} kW   "
            f"battery {reading.battery_soc or 0:4.1f} % {reading.battery_w / 1000:+5.2f} kW   "
            f"grid {' '.join(f'{a:+6.1f}' for a in m.grid_current_a)} A",
            LEGEND,
            f"{'charger':<9} {'mode':<9} {'status':<14} {'limit':>7} {'phases':>6} {'draw':>15}"
            "  reason",
        ]
        commands = {c.id: c for c in report.decision.commands}
        for charger in report.snapshot.chargers:
            command = commands[charger.id]
            draw = "/".join(f"{a:.1f}" for a in charger.draw_a[: charger.phases])
            # The phase set it is sent (a charger that switches), else the one it has.
            phases = command.phases or charger.phases
            lines.append(
                f"{charger.id:<9} {charger.mode.value:<9} {charger.status:<14} "
                f"{command.limit_a:5.1f} A {phases:>6} {draw:>13} A  "
                f"{command.detail or command.reason.text}"
            )
        if self.clear:  # redrawn in place: the story printed at the start is gone
            lines += ["", "latest events:", *(self.events or ["(none yet)"]), "", STORY]
        prefix = "\x1b[H\x1b[2J" if self.clear else ""
        print(prefix + "\n".join(lines) + ("" if self.clear else "\n"), file=self.out, flush=True)

    def farewell(self) -> str:
        return (
            f"demo stopped after {self.cycles} cycles at site time "
            f"{_clock(self.live.time_of_day_s)}; the chargers keep their failsafe profiles"
        )


def demo_site(speed: float) -> LiveSite:
    """The demo's site (meters not yet served), also run inside the VM tests (tests/vm)."""
    from gateway.sim.ev import EV
    from gateway.sim.live import LiveSite

    scenario = load_scenario(str(DEMO / "site.toml"))
    config = load_runnable_config(str(DEMO / "gateway.toml"))
    start = scenario.start_s
    return LiveSite(
        config,
        Premises(config.site, scenario.household, scenario.pv, scenario.battery),
        versions={c.id: "2.0.1" if c.ocpp.protocol == "2.0.1" else "1.6" for c in config.chargers},
        cars={
            s.charger: EV(
                max_a=s.max_a,
                phases=s.phases,
                energy_wanted_wh=s.energy_wh,
                lag_s=s.lag_s,
                speed=speed,  # full when the day says so, not `speed` times later
            )
            for s in scenario.sessions
        },
        quirks={s.charger: s.quirks for s in scenario.sessions if s.quirks},
        arrivals_s={s.charger: max(0.0, (s.arrive_s - start) / speed) for s in scenario.sessions},
        day_start_s=start,
        speed=speed,
    )


async def run_demo(args: argparse.Namespace) -> None:
    from gateway.daemon import Gateway

    live = demo_site(args.speed)
    config = live.config
    by_role = {m.role: m.connection.port for m in config.meters}
    if args.free_ports:
        await live.start_meters()
        gateway_config = live.gateway_config()
    else:
        await live.start_meters(by_role["grid"], by_role["pv"])
        gateway_config = live.gateway_config(config.ocpp.port, config.export.port, config.web.port)
    table = Table(live, sys.stdout, args.every)
    gateway = Gateway(gateway_config, on_cycle=table)
    stop = asyncio.Event()
    try:
        await gateway.start()
        for line in gateway.summary():
            print(line)
        print(STORY, flush=True)
        await live.connect_chargers(gateway.central.port)
        live.start_ticking()
        runner = asyncio.create_task(gateway.run(stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(runner), args.duration)
        stop.set()
        await runner
    finally:
        stop.set()
        await live.stop()
        await gateway.stop()
        print(table.farewell(), flush=True)  # also after Ctrl-C


def run(args: argparse.Namespace) -> int:
    from gateway.logsetup import setup_logging

    setup_logging("warning")  # the table is the demo's output; warnings still show
    try:
        asyncio.run(run_demo(args))
    except OSError as exc:
        print(
            f"error: {exc}\n(another program uses the demo's ports? try --free-ports)",
            file=sys.stderr,
        )
        return 1
    return 0
