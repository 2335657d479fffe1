"""What the gateway knows about each charger, and the lenient readers that feed it.

Pure: no I/O; times are passed in. Sessions of both protocol versions write into one
`Live` record per charger id; `Live.snapshot()` gives the hub a frozen `ChargerState`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from gateway.model import ACTIVE_STATUSES, STATUSES

_STATUS_BY_LOWER = {s.lower(): s for s in STATUSES}
# 2.0.1 chargingState while the connector is Occupied -> 1.6 status.
_CHARGING_STATE = {
    "charging": "Charging",
    "suspendedev": "SuspendedEV",
    "suspendedevse": "SuspendedEVSE",
    "evconnected": "Preparing",
    "idle": "Preparing",
}
# Statuses that go with a session in progress.
_IN_SESSION = ("Charging", "SuspendedEV", "SuspendedEVSE")
# With several connectors, the charger's status is the first of these any connector has.
_BUSIEST = ("Charging", "SuspendedEVSE", "SuspendedEV", "Preparing")
# A line drawing more than this counts as an active phase.
ACTIVE_LINE_A = 1.0


def status_16(text: Any) -> str | None:
    """A 1.6 status name, tolerating case ('charging'); None if it is not one."""
    return _STATUS_BY_LOWER.get(str(text).strip().lower())


def status_201(connector_status: str, charging_state: str | None, in_tx: bool) -> str | None:
    """Map a 2.0.1 connector status plus the transaction's charging state to a 1.6 name."""
    cs = str(connector_status).strip().lower()
    if cs != "occupied":
        return status_16(cs)
    if charging_state is not None and in_tx:
        return _CHARGING_STATE.get(str(charging_state).strip().lower(), "Charging")
    return "Preparing" if not in_tx else "Charging"


@dataclass(frozen=True, slots=True)
class Reading:
    """One MeterValues report, reduced to what the allocator needs (None = not reported)."""

    current_a: tuple[float | None, float | None, float | None] = (None, None, None)
    voltage_v: float | None = None
    offered_a: float | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    skipped: int = 0  # samples that were not a number


_SCALE = {"w": 1.0, "kw": 1000.0, "wh": 1.0, "kwh": 1000.0, "a": 1.0, "v": 1.0}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _unit_scale(sample: dict) -> float:
    uom = sample.get("unit_of_measure")
    if isinstance(uom, dict):  # 2.0.1: {"unit": "kWh", "multiplier": 0}
        unit = str(uom.get("unit", ""))
        multiplier = _number(uom.get("multiplier", 0)) or 0.0
        return _SCALE.get(unit.lower(), 1.0) * 10.0**multiplier
    return _SCALE.get(str(sample.get("unit", "")).lower(), 1.0)


def _line(phase: Any) -> int | None:
    text = str(phase or "")
    if len(text) >= 2 and text[0] == "L" and text[1] in "123":
        return int(text[1]) - 1
    return None


# A voltage sample above this, without a phase saying so, is line-to-line (400 V
# nominal) rather than line-to-neutral (230 V).
LINE_TO_LINE_ABOVE_V = 300.0


def _volts(phase: Any, value: float) -> tuple[bool, float]:
    """(line-to-neutral?, the value): `L1-L2` style phases and unphased samples above
    `LINE_TO_LINE_ABOVE_V` are line-to-line."""
    text = str(phase or "")
    if text.startswith("L") and "-" in text:
        return not text.endswith(("-L1", "-L2", "-L3")), value
    return value <= LINE_TO_LINE_ABOVE_V, value


def _finer(
    current: list[float | None], power_w: float | None, volts: float | None
) -> list[float | None]:
    """Whole-amp currents (MicroOcpp sends "15.00" at 15.9 A) refined by power / voltage
    where that agrees with them within the rounding: the finer figure wins."""
    drawing = [c for c in current if c is not None and c >= ACTIVE_LINE_A]
    if not drawing or power_w is None or not volts or any(c != int(c) for c in drawing):
        return current
    per_line = power_w / (volts * len(drawing))
    if not all(abs(per_line - c) < 1.0 for c in drawing):
        return current  # unbalanced lines, or a power figure that is not this draw
    return [per_line if c is not None and c >= ACTIVE_LINE_A else c for c in current]


def parse_meter_values(meter_value: Any, lines: int) -> Reading:
    """Read 1.6 or 2.0.1 meter values leniently: odd entries are skipped and counted.

    A current without a phase is taken as the draw on each of the charger's `lines`. The
    voltage is line-to-neutral: line-to-line samples count only when there is no other,
    divided by sqrt(3).
    """
    current: list[float | None] = [None, None, None]
    unphased: float | None = None
    neutral: list[float] = []
    between: list[float] = []
    values: dict[str, float] = {}
    skipped = 0
    for mv in meter_value if isinstance(meter_value, list) else []:
        samples = mv.get("sampled_value") if isinstance(mv, dict) else None
        for sample in samples if isinstance(samples, list) else []:
            if not isinstance(sample, dict):
                continue
            number = _number(sample.get("value"))
            if number is None:
                skipped += 1
                continue
            number *= _unit_scale(sample)
            measurand = str(sample.get("measurand", "Energy.Active.Import.Register"))
            line = _line(sample.get("phase"))
            if measurand == "Current.Import":
                if line is None:
                    unphased = number
                else:
                    current[line] = number
            elif measurand == "Voltage":
                to_neutral, value = _volts(sample.get("phase"), number)
                (neutral if to_neutral else between).append(value)
            elif line is None:
                values[measurand] = number
    if unphased is not None and all(c is None for c in current):
        current = [unphased if i < lines else 0.0 for i in range(3)]
    volts = neutral or [v / math.sqrt(3) for v in between]
    voltage = sum(volts) / len(volts) if volts else None
    power = values.get("Power.Active.Import")
    current = _finer(current, power, voltage)
    return Reading(
        current_a=(current[0], current[1], current[2]),
        voltage_v=voltage,
        offered_a=values.get("Current.Offered"),
        power_w=power,
        energy_wh=values.get("Energy.Active.Import.Register"),
        skipped=skipped,
    )


@dataclass(frozen=True, slots=True)
class ChargerState:
    """The hub's view of one charger (see `CentralSystem.states()`)."""

    id: str
    online: bool
    protocol: str | None  # "1.6" | "2.0.1"
    status: str  # 1.6 connector status name
    draw_a: tuple[float, float, float]
    voltage_v: float | None
    offered_a: float | None
    power_w: float | None
    session_wh: float
    active_phases: int
    last_seen: float | None  # epoch seconds of the last message
    obeys: bool
    limit_a: float | None  # the dynamic limit the charger last accepted
    problem: str  # "" when all is well, else what is wrong, for the status page
    # For the fuse guard (inputs.py); monotonic times, comparable with the hub's clock.
    reading_mono: float | None = None  # when the last MeterValues current arrived
    lines_reported: tuple[bool, bool, bool] = (False, False, False)  # lines in that reading
    sent_a: float | None = None  # the last dynamic limit the charger acknowledged (A/phase)
    sent_until_mono: float | None = None  # when that layer ends in the charger (then failsafe)
    failsafe_a: float = 0.0  # what the charger falls back to on its own
    uncontrolled: bool = False  # refuses every profile fallback, or keeps disobeying
    id_tag: str | None = None  # who started the session in progress (None: not told)


@dataclass
class Live:
    """Mutable per-charger record, kept across reconnects."""

    id: str
    online: bool = False
    protocol: str | None = None
    vendor: str = ""
    model: str = ""
    statuses: dict[int, str] = field(default_factory=dict)  # connector/evse id -> 1.6 name
    charging_state: str | None = None  # 2.0.1
    transaction: str | None = None
    id_tag: str | None = None
    draw_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    voltage_v: float | None = None
    offered_a: float | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    session_start_wh: float | None = None
    session_wh: float = 0.0
    session_mono: float | None = None  # when we learnt of the session (monotonic)
    last_seen: float | None = None
    reading_at: float | None = None  # monotonic, when the last MeterValues arrived
    reading_mono: float | None = None
    lines_reported: tuple[bool, bool, bool] = (False, False, False)
    sent_until_mono: float | None = None
    failsafe_a: float = 0.0
    uncontrolled: bool = False
    obeys: bool = True
    applied_a: float | None = None
    problem: str = ""
    # The hub's wish: the limit and when it last said so.
    wanted_a: float | None = None
    wanted_at: float | None = None
    wanted_phases: int | None = None  # the phase set, for chargers that switch phases
    phase_switch: bool | None = None  # the firmware's word on switching (None: not said)
    # Set by anything the control task must react to (limit, boot, reading).
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    boots: int = 0
    # False from each connect until the charger tells us its state (Boot, a status, or a
    # session proven by its messages): until then we hold what it has, never send 0 A.
    state_known: bool = False

    @property
    def status(self) -> str:
        """The charger's status: connector 0 when it is out of service, else the busiest
        connector's (Charging when any connector charges, then a car in any state)."""
        whole = self.statuses.get(0)
        if whole in ("Unavailable", "Faulted"):
            return whole
        others = [s for c, s in sorted(self.statuses.items()) if c != 0]
        for wanted in _BUSIEST:
            if wanted in others:
                return wanted
        return others[0] if others else whole or ("Available" if self.online else "Unavailable")

    def seen(self, now: float) -> None:
        self.last_seen = now

    def booted(self, vendor: str, model: str) -> None:
        self.vendor, self.model = vendor, model
        self.boots += 1
        self.learnt()

    def learnt(self) -> None:
        """The charger told us its state: control may act on it."""
        if not self.state_known and self.status in ACTIVE_STATUSES:
            # The hub's wish so far rested on a state we did not know (a charging car
            # taken for Available gets 0 A): wait for its next one.
            self.wanted_at = None
        self.state_known = True
        self.wake.set()

    def start_session(self, transaction: str, meter_wh: float | None, mono: float) -> None:
        self.transaction = transaction
        self.session_mono = mono
        self.learnt()
        self.session_start_wh = meter_wh
        self.session_wh = 0.0

    def join_session(self, transaction: str, mono: float) -> None:
        """A session that ran before we (re)started: its messages carry its transaction id.

        While we know nothing else, a session in progress means a car is charging; a
        status we were told stays (a late meter value must not revive a stopped car).
        """
        if self.transaction is None:
            self.transaction, self.session_mono = transaction, mono
            self.session_start_wh, self.session_wh = None, 0.0
        if not self.state_known and not any(s in _IN_SESSION for s in self.statuses.values()):
            self.statuses[1] = "Charging"
        self.learnt()

    def stop_session(self, meter_wh: float | None) -> None:
        if meter_wh is not None:
            self._count_energy(meter_wh)
        self.transaction = None
        self.id_tag = None
        self.charging_state = None

    def _count_energy(self, energy_wh: float) -> None:
        self.energy_wh = energy_wh
        if self.transaction is None:
            return
        if self.session_start_wh is None:  # joined mid-session (reconnect)
            self.session_start_wh = energy_wh - self.session_wh
        self.session_wh = max(0.0, energy_wh - self.session_start_wh)

    def apply(self, reading: Reading, now: float, mono: float) -> None:
        draw = tuple(c if c is not None else 0.0 for c in reading.current_a)
        if any(c is not None for c in reading.current_a):
            self.draw_a = draw  # type: ignore[assignment]
            self.lines_reported = tuple(c is not None for c in reading.current_a)  # type: ignore[assignment]
            self.reading_mono = mono
        if reading.voltage_v is not None:
            self.voltage_v = reading.voltage_v
        if reading.offered_a is not None:
            self.offered_a = reading.offered_a
        if reading.power_w is not None:
            self.power_w = reading.power_w
        if reading.energy_wh is not None:
            self._count_energy(reading.energy_wh)
        self.reading_at = mono
        self.wake.set()

    @property
    def active_phases(self) -> int:
        return sum(1 for c in self.draw_a if c > ACTIVE_LINE_A)

    def snapshot(self) -> ChargerState:
        return ChargerState(
            id=self.id,
            online=self.online,
            protocol=self.protocol,
            status=self.status,
            draw_a=self.draw_a,
            voltage_v=self.voltage_v,
            offered_a=self.offered_a,
            power_w=self.power_w,
            session_wh=self.session_wh,
            active_phases=self.active_phases,
            last_seen=self.last_seen,
            obeys=self.obeys,
            limit_a=self.applied_a,
            problem=self.problem,
            reading_mono=self.reading_mono,
            lines_reported=self.lines_reported,
            sent_a=self.applied_a,
            sent_until_mono=self.sent_until_mono,
            failsafe_a=self.failsafe_a,
            uncontrolled=self.uncontrolled,
            id_tag=self.id_tag if self.transaction is not None else None,
        )
