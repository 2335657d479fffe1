"""The controller's settings: `[control]` for the site, overridable per `[[chargers]]` entry.

Defaults are those of the ALLOCATION contract ("Over time"). Stale data and SOC
hysteresis concern site-wide measurements, so they are site settings only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from gateway.schema import Table


@dataclass(frozen=True, slots=True)
class Timing:
    """The per-charger timing of the controller (each key overridable per charger)."""

    ramp_up_a_per_s: float = 0.5
    dead_band_a: float = 0.5
    start_delay_s: float = 60.0
    stop_delay_s: float = 180.0
    min_pause_s: float = 180.0
    excess_hold_s: float = 900.0
    phase_dwell_s: float = 300.0  # between 1-/3-phase switches (`phase_switching` chargers)


# key -> (lowest, highest) accepted value
_TIMING_RANGES: dict[str, tuple[float, float]] = {
    "ramp_up_a_per_s": (0.01, 1000.0),
    "dead_band_a": (0.0, 10.0),
    "start_delay_s": (0.0, 86400.0),
    "stop_delay_s": (0.0, 86400.0),
    "min_pause_s": (0.0, 86400.0),
    "excess_hold_s": (0.0, 86400.0),
    "phase_dwell_s": (0.0, 86400.0),
}


@dataclass(frozen=True, slots=True)
class ControlSettings:
    timing: Timing = field(default_factory=Timing)
    stale_after_s: float = 10.0
    soc_hysteresis_pct: float = 3.0
    cycle_s: float = 1.0  # the daemon's control cycle


def read_timing(t: Table, base: Timing) -> Timing:
    """Timing keys of `t`, each defaulting to `base` (the site's values for a charger)."""
    values = {}
    for f in fields(Timing):
        lo, hi = _TIMING_RANGES[f.name]
        values[f.name] = t.number(f.name, getattr(base, f.name), lo=lo, hi=hi)
    return Timing(**values)


def read_control(top: Table) -> ControlSettings:
    """The `[control]` section of a config or scenario file (absent: every default)."""
    t = top.table("control", None)
    if t is None:
        return ControlSettings()
    control = ControlSettings(
        timing=read_timing(t, Timing()),
        stale_after_s=t.number("stale_after_s", 10.0, lo=1, hi=3600),
        soc_hysteresis_pct=t.number("soc_hysteresis_pct", 3.0, lo=0, hi=50),
        cycle_s=t.number("cycle_s", 1.0, lo=0.2, hi=60),
    )
    t.finish()
    return control
