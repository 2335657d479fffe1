"""What the hub hands the export server once per cycle: everything the map publishes.

Units as in `gateway.model`: per-phase amps, grid import +, battery discharge +, charger
consumption +. NaN (floats) or None means unknown; it is published as NaN or the
integer sentinel. Per-phase tuples have one entry per site phase (1 or 3); missing
phases read as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.model import STATUSES, Mode, Reason

NAN = math.nan
UNKNOWN3 = (NAN, NAN, NAN)


@dataclass(frozen=True, slots=True)
class ChargerState:
    id: str
    online: bool = False
    status: str | None = None  # OCPP 1.6 status name (gateway.model.STATUSES)
    phases: int | None = None
    mode: Mode | None = None
    reason: Reason | None = None
    allocated_a: float = NAN
    target_a: float = NAN
    current_a: tuple[float, ...] = UNKNOWN3  # measured, charger lines L1 L2 L3
    power_w: float = NAN
    session_wh: float | None = None
    min_a: float = NAN
    max_a: float = NAN
    control_state: int = 0  # gateway.inputs.ControlState
    assumed_a: float = NAN  # counted for it while out of control (NaN: its draw is measured)

    @property
    def status_code(self) -> int:
        """0 unknown, then 1.. in the order of `gateway.model.STATUSES`."""
        return STATUSES.index(self.status) + 1 if self.status in STATUSES else 0


@dataclass(frozen=True, slots=True)
class HoldState:
    """The battery hold as published (registers 160-167, `status`)."""

    state: int = 0  # 0 no battery control, 1 released, 2 held, 3 the last write failed
    result: int = 0xFFFF  # 0 accepted, else the Modbus exception (0xFFFE no answer, 0xFFFF none)
    limit_w: float = NAN  # held at (NaN: not held)
    writes: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class ExportState:
    cycle: int
    updated_unix: float
    cycle_time_ms: float
    breaker_limit_a: float  # site.main_breaker_a: no write can raise a limit above it
    breaker_limit_w: float  # main_breaker_a x voltage x phases
    meters_ok: bool = True
    ocpp_ok: bool = True
    failsafe: bool = False
    external_limit: bool = False
    data_stale: bool = False
    grid_power_w: float = NAN
    grid_power_phase_w: tuple[float, ...] = UNKNOWN3
    grid_current_a: tuple[float, ...] = UNKNOWN3
    voltage_v: tuple[float, ...] = UNKNOWN3
    pv_power_w: float = NAN
    battery_power_w: float = NAN
    battery_soc: float = NAN
    # Grid minus chargers: what the fuse sees besides the cars (net of PV and battery).
    net_load_power_w: float = NAN
    net_load_a: tuple[float, ...] = UNKNOWN3
    # "Household" is the house's own consumption, everywhere (registers, status, demo).
    household_consumption_w: float = NAN
    ev_power_w: float = NAN
    headroom_a: tuple[float, ...] = UNKNOWN3
    current_limit_a: float = NAN  # site current limit in force (fuse or external)
    power_limit_w: float = NAN  # import power limit in force (NaN: none)
    chargers: tuple[ChargerState, ...] = ()
    battery_hold: HoldState = HoldState()

    @property
    def status_bits(self) -> int:
        flags = (self.meters_ok, self.ocpp_ok, self.failsafe, self.external_limit, self.data_stale)
        return sum(1 << bit for bit, flag in enumerate(flags) if flag)
