"""Value types shared by every part of the gateway.

Currents are per-phase amps (a 3-phase charger "at 10 A" draws 10 A on each of its
phases); grid current is + import / − export; battery power is + discharge / − charge.
Per-phase tuples have one entry per site phase (A, or A B C).

The value types are NamedTuples, not frozen dataclasses: immutable and hashable alike, but
one is built in a third of the time (the controller and the simulator build several per
charger per cycle) and the `allocate` command starts without importing `dataclasses`
(and the `inspect` it pulls in). A changed copy is `value._replace(...)`.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import NamedTuple

PHASE_NAMES = "ABC"

# OCPP 1.6 connector statuses; 2.0.1 statuses are mapped onto these by the OCPP layer.
STATUSES = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)
ACTIVE_STATUSES = frozenset({"Preparing", "Charging", "SuspendedEVSE", "SuspendedEV"})


class Mode(StrEnum):
    STANDARD = "standard"
    ECO = "eco"
    SOLAR = "solar"
    EXCESS = "excess"

    @property
    def urgency(self) -> int:
        """Order of service: lower is served first, before priority is looked at."""
        return _URGENCY[self]

    @property
    def code(self) -> int:
        return _URGENCY[self]


_URGENCY = {Mode.STANDARD: 0, Mode.ECO: 1, Mode.SOLAR: 2, Mode.EXCESS: 3}


class Distribution(StrEnum):
    SHARED = "shared"
    PRIORITY = "priority"
    STRICT = "strict"
    OPTIMIZED = "optimized"


class Metering(StrEnum):
    """How the grid meter bills: per phase, or net over the phases ("saldierend")."""

    PER_PHASE = "per_phase"
    NET = "net"


class Reason(Enum):
    """Why a charger got what it got. The code is public (Modbus registers)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text

    NOT_ACTIVE = (1, "no car charging")
    RELEASED = (2, "car not drawing, capacity released")
    STANDARD = (3, "standard")
    SOLAR_SURPLUS = (4, "solar surplus")
    EXCESS_EXPORT = (5, "excess export")
    ECO_MINIMUM = (6, "eco minimum")
    BREAKER_LIMIT = (7, "limited by breaker or import cap")
    CIRCUIT_LIMIT = (8, "limited by circuit")
    NO_SURPLUS = (9, "not enough surplus")
    BATTERY_BELOW_TARGET = (10, "battery below target")
    NO_EXCESS = (11, "export below excess threshold")
    NO_CAPACITY = (12, "breaker cannot carry the minimum")
    SHARED = (13, "sharing capacity")
    BATTERY_BELOW_MIN = (14, "battery below soc_min")
    BATTERY_WOULD_DISCHARGE = (15, "battery would discharge for this car")
    # Set by the controller (gateway.allocation.controller), not the allocator.
    FAILSAFE_STALE = (20, "failsafe: meter data stale")
    START_DELAY = (21, "waiting to start")
    STOP_DELAY = (22, "holding minimum before stop")
    MIN_PAUSE = (23, "minimum pause after stop")
    EXCESS_HOLD = (24, "excess hold")
    RAMPING = (25, "ramping up")
    EXTERNAL_LIMIT = (26, "external site limit")
    GUARD_CUT = (27, "cut: measured grid current over the limit")
    PHASE_SWITCH = (30, "pausing to switch phases")


class Battery(NamedTuple):
    max_charge_w: float
    max_discharge_w: float
    soc_min: float = 20.0
    soc_target: float = 80.0
    # The battery policy (`gateway/allocation/battery.py`): the modes whose cars the
    # battery may supply while above soc_min, and the opt-in assist for Solar/Excess.
    supply_modes: frozenset[Mode] = frozenset({Mode.STANDARD, Mode.ECO})
    assist_soc: float | None = None
    assist_w: float = 0.0
    # The gateway can hold it through its inverter (a battery meter with control = true):
    # a car the policy keeps off it then charges from the grid instead of waiting.
    held: bool = False


class Inverter(NamedTuple):
    max_w: float | None = None
    max_phase_w: float | None = None
    asymmetric: bool = False


class Circuit(NamedTuple):
    name: str
    limit_a: float
    chargers: tuple[str, ...]


class Site(NamedTuple):
    main_breaker_a: float
    phases: int = 3
    voltage_v: float = 230.0
    max_import_w: float | None = None
    distribution: Distribution = Distribution.PRIORITY
    excess_threshold_w: float = 13000.0
    allow_grid_charging: bool = True
    # Net: the surplus and the excess are the sum over the phases (the breaker stays
    # per phase).
    metering: Metering = Metering.PER_PHASE
    battery: Battery | None = None
    inverter: Inverter | None = None
    circuits: tuple[Circuit, ...] = ()
    # A SuspendedEV charger drawing < 1 A this long gives its share to the others.
    release_after_s: float = 60.0


class Measurements(NamedTuple):
    grid_current_a: tuple[float, ...]
    pv_power_w: float | None = None
    battery_soc: float | None = None
    battery_power_w: float | None = None
    # Measured phase voltages; the site's nominal voltage is used where absent.
    voltage_v: tuple[float, ...] | None = None


class Charger(NamedTuple):
    """One charger as the allocator sees it: its settings and its state this cycle."""

    id: str
    min_a: float
    max_a: float
    mode: Mode = Mode.STANDARD
    phases: int = 3
    priority: int = 1
    # Site phase each charger line L1, L2, L3 is wired to ("ABC", "BCA", ... or "A").
    phase_map: str = "ABC"
    status: str = "Available"
    # Measured current per charger line (L1, L2, L3).
    draw_a: tuple[float, ...] = (0.0, 0.0, 0.0)
    # How long the charger has been SuspendedEV while drawing < 1 A (kept by the controller).
    idle_s: float = 0.0


class Snapshot(NamedTuple):
    site: Site
    measurements: Measurements
    chargers: tuple[Charger, ...] = ()


class ChargerAllocation(NamedTuple):

    id: str
    allocated_a: float
    target_a: float
    phases: int
    mode: Mode
    available_a: float
    reason: Reason


class SiteSummary(NamedTuple):
    household_a: tuple[float, ...]
    export_w: float
    headroom_a: tuple[float, ...]
    battery_soc: float | None


class Allocation:
    """The allocation of one snapshot: the site's figures and one result per charger,
    also by id (a plain class: a NamedTuple cannot build the index once)."""

    __slots__ = ("by_id", "chargers", "site")

    def __init__(self, site: SiteSummary, chargers: tuple[ChargerAllocation, ...] = ()) -> None:
        self.site = site
        self.chargers = chargers
        self.by_id = {c.id: c for c in chargers}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Allocation):
            return NotImplemented
        return self.site == other.site and self.chargers == other.chargers

    def __hash__(self) -> int:
        return hash((self.site, self.chargers))

    def __repr__(self) -> str:
        return f"Allocation(site={self.site!r}, chargers={self.chargers!r})"
