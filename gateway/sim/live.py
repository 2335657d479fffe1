"""A simulated site on real sockets, for the demo, the end-to-end tests and bench/e2e.py.

`Premises` physics (household, PV, a self-consumption battery) drive two Modbus TCP
servers on 127.0.0.1: a grid meter (Eastron SDM630 registers) and a hybrid inverter
(Deye registers: PV and battery). The cars are held by simulated OCPP charge points
that connect to the gateway like real chargers. Every `tick()` reads what the cars draw,
balances the site and rewrites the meters' registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gateway.config import Config
from gateway.meters.profile import Control, builtin
from gateway.meters.served import ServedBus, SimControl, Unit, image, release_image
from gateway.model import PHASE_NAMES
from gateway.sim.chargepoint import SimChargePoint
from gateway.sim.ev import EV
from gateway.sim.site import Premises, Reading

GRID_MODEL, INVERTER_MODEL = "sdm630", "deye"


def _runs(words: Mapping[int, int]) -> list[tuple[int, list[int]]]:
    """Contiguous (address, words) runs, so a rewrite costs a few calls, not one a word."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(words):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(words[address])
        else:
            runs.append((address, [words[address]]))
    return runs


@dataclass
class Station:
    """A simulated charger, the car in it, and where its lines land on the site."""

    charger_id: str
    point: SimChargePoint
    site_phases: tuple[int, ...]  # site phase index of L1, L2, L3 (wired lines only)
    arrive_after_s: float | None = None  # plug the car in this long after start
    plugged: bool = False


@dataclass
class LiveSite:
    config: Config
    premises: Premises
    versions: Mapping[str, str]  # charger id -> "1.6" | "2.0.1"
    cars: Mapping[str, EV] = field(default_factory=dict)
    quirks: Mapping[str, frozenset[str]] = field(default_factory=dict)  # charger id -> QUIRKS
    arrivals_s: Mapping[str, float] = field(default_factory=dict)
    day_start_s: float = 10 * 3600  # the premises' time of day at start
    speed: float = 1.0  # premises time runs this much faster than the wall clock
    meter_interval_s: float = 2.0  # how often the simulated chargers send MeterValues
    car_tick_s: float = 0.05  # how often each simulated charger moves its car
    # The inverter's writable battery control (the hold); default: the Deye profile's.
    # The battery obeys what was written to it, within the control's own expiry.
    control: Control | None = None

    def __post_init__(self) -> None:
        self.grid = ServedBus([Unit(1, {0: 0})])
        self.inverter = ServedBus([Unit(1, {0: 0})])
        self.stations: list[Station] = []
        self.reading: Reading | None = None
        # Meter counters (Wh): grid import/export, battery discharged/charged.
        self.energy = {"grid_in": 0.0, "grid_out": 0.0, "bat_out": 0.0, "bat_in": 0.0}
        self._last_balance: float | None = None
        self._t0 = time.monotonic()
        self._task: asyncio.Task | None = None
        # What the grid meter answers instead of the physics (a faulty meter), by quantity.
        self.grid_faults: dict[str, float] = {}
        self.hold: SimControl | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start_meters(self, grid_port: int = 0, inverter_port: int = 0) -> None:
        """Serve the meters (port 0: any free port) with this instant's values."""
        self._t0 = time.monotonic()
        reading = self._balance()
        self.grid = ServedBus([Unit(1, self._grid_words(reading))])
        control = self.control or builtin(INVERTER_MODEL).control
        assert control is not None
        inverter = Unit(1, self._inverter_words(reading) | release_image(control))
        self.hold = SimControl(control, inverter)
        self.inverter = ServedBus([inverter])
        await self.grid.start_tcp(grid_port)
        await self.inverter.start_tcp(inverter_port)

    def gateway_config(
        self,
        ocpp_port: int = 0,
        export_port: int = 0,
        web_port: int = 0,
        state_dir: str | None = None,
    ) -> Config:
        """The config with its grid and inverter meters pointed at this site's servers."""
        ports = {"grid": self.grid.port, "pv": self.inverter.port, "battery": self.inverter.port}
        meters = tuple(
            replace(m, connection=replace(m.connection, host="127.0.0.1", port=ports[m.role]))
            for m in self.config.meters
        )
        return replace(
            self.config,
            meters=meters,
            ocpp=replace(self.config.ocpp, host="127.0.0.1", port=ocpp_port),
            export=replace(self.config.export, host="127.0.0.1", port=export_port),
            web=replace(self.config.web, host="127.0.0.1", port=web_port),
            state=replace(self.config.state, dir=state_dir),  # None: nothing persisted
        )

    async def connect_chargers(self, ocpp_port: int) -> None:
        for c in self.config.chargers:
            ch = c.charger
            wired = min(ch.phases, len(ch.phase_map), self.config.site.phases)
            car = self.cars.get(ch.id) or EV(max_a=ch.max_a, phases=wired)
            point = SimChargePoint(
                ch.id,
                f"ws://127.0.0.1:{ocpp_port}/{ch.id}",
                version=self.versions.get(ch.id, "1.6"),
                password=c.ocpp.password,
                ev=car,
                max_a=ch.max_a,
                meter_interval_s=self.meter_interval_s,
                tick_s=self.car_tick_s,
                quirks=self.quirks.get(ch.id, frozenset()),
            )
            phases = tuple(PHASE_NAMES.index(p) for p in ch.phase_map[:wired])
            self.stations.append(Station(ch.id, point, phases, self.arrivals_s.get(ch.id)))
            await point.start()
        await asyncio.gather(
            *(asyncio.wait_for(s.point.connected.wait(), 30) for s in self.stations)
        )

    async def run(self, tick_s: float = 0.2) -> None:
        """Keep the physics and the registers moving (as a background task)."""
        while True:
            await self.tick()
            await asyncio.sleep(tick_s)

    def start_ticking(self, tick_s: float = 0.2) -> None:
        self._task = asyncio.create_task(self.run(tick_s), name="live site")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for station in self.stations:
            await station.point.stop()
        await self.grid.stop()
        await self.inverter.stop()

    # -- physics ------------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    @property
    def time_of_day_s(self) -> float:
        return self.day_start_s + self.elapsed_s * self.speed

    def ev_currents(self) -> list[float]:
        """What the cars draw per site phase right now."""
        per_phase = [0.0] * self.config.site.phases
        for station in self.stations:
            lines = station.point.ev.line_currents()
            for k, phase in enumerate(station.site_phases):
                per_phase[phase] += lines[k]
        return per_phase

    def _balance(self) -> Reading:
        now = self.time_of_day_s
        if self.hold is not None and self.premises.battery is not None:
            self.premises.battery.limit_w = self.hold.limit_w()
        reading = self.premises.read(now, self.ev_currents())
        if self._last_balance is not None:
            hours = (now - self._last_balance) / 3600
            grid_w = sum(reading.grid_a) * self.config.site.voltage_v
            self.energy["grid_in" if grid_w > 0 else "grid_out"] += abs(grid_w) * hours
            self.energy["bat_out" if reading.battery_w > 0 else "bat_in"] += (
                abs(reading.battery_w) * hours
            )
        self._last_balance = now
        self.reading = reading
        return reading

    async def tick(self) -> None:
        for station in self.stations:
            due = station.arrive_after_s
            if not station.plugged and due is not None and self.elapsed_s >= due:
                station.plugged = True
                await station.point.plug_in()
        reading = self._balance()
        for bus, words in (
            (self.grid, self._grid_words(reading)),
            (self.inverter, self._inverter_words(reading)),
        ):
            if bus.server is not None and not bus.units[1].dead:
                for address, run in _runs(words):
                    await bus.set(1, address, run)

    def _grid_words(self, r: Reading) -> dict[int, int]:
        volts = self.config.site.voltage_v
        values: dict[str, float] = {
            "power_w": sum(r.grid_a) * volts,
            "frequency_hz": 50.0,
            "energy_import_wh": self.energy["grid_in"],
            "energy_export_wh": self.energy["grid_out"],
        }
        for i, amps in enumerate(r.grid_a, start=1):
            values |= {
                f"voltage_l{i}_v": volts,
                f"current_l{i}_a": amps,
                f"power_l{i}_w": amps * volts,
            }
        values |= self.grid_faults
        return image(builtin(GRID_MODEL).parts["meter"].registers, values)

    def _inverter_words(self, r: Reading) -> dict[int, int]:
        profile = builtin(INVERTER_MODEL)
        words = image(profile.parts["pv"].registers, {"_pv1_w": r.pv_w, "_pv2_w": 0.0})
        battery = {
            "soc_pct": r.battery_soc or 0.0,
            "power_w": r.battery_w,
            "energy_import_wh": self.energy["bat_out"],  # the profile's discharged counter
            "energy_export_wh": self.energy["bat_in"],
        }
        return words | image(profile.parts["battery"].registers, battery)

    # -- what tests and the demo do to it -------------------------------------------------

    def station(self, charger_id: str) -> Station:
        return next(s for s in self.stations if s.charger_id == charger_id)

    def set_meter_dead(self, dead: bool) -> None:
        """The grid meter stops (or resumes) answering."""
        self.grid.units[1].dead = dead

    def add_load_w(self, per_phase: Iterable[float]) -> None:
        self.premises.extra_w = tuple(per_phase)
