"""`--plot`: a picture of the simulated day (matplotlib, the optional `[plot]` extra).

Legends sit to the right of the panels, never over the traces; each charger's visits
are marked in its colour along the top of the chargers panel: ▲ arrival, ● full,
▼ departure.
"""

from __future__ import annotations

from pathlib import Path

from gateway.model import PHASE_NAMES
from gateway.sim.report import visit_events
from gateway.sim.simulation import Result

_MARKERS = {"arrive": "^", "full": "o", "leave": "v"}
_LABELS = {"arrive": "arrives", "full": "full", "leave": "leaves"}


class PlotUnavailable(Exception):
    pass


def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed: "
            "pip install matplotlib (in a clone: pip install '.[plot]')"
        ) from None


def save_plot(result: Result, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display on a Pi
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    trace = result.trace
    assert trace is not None
    sc = result.scenario
    hours = [t / 3600 for t in trace.times]
    has_soc = any(s is not None for s in trace.battery_soc)
    rows = 4 if has_soc else 3
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(14, 2.6 * rows), layout="constrained")
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small"}

    power = axes[0]
    power.plot(hours, [sum(h) / 1000 for h in trace.household_w], label="household")
    power.plot(hours, [p / 1000 for p in trace.pv_w], label="PV")
    power.plot(hours, [w / 1000 for w in trace.cars_w], label="cars")
    if has_soc:
        power.plot(hours, [b / 1000 for b in trace.battery_w], label="battery (+ discharge)")
    power.set_ylabel("kW")
    power.legend(**outside)

    chargers = axes[1]
    colours = []
    for k, c in enumerate(sc.chargers):
        line = chargers.plot(hours, [lim[k] for lim in trace.limit_a], label=f"{c.id} limit")
        colours.append(line[0].get_color())
        chargers.plot(
            hours,
            [d[k] for d in trace.draw_a],
            linestyle=":",
            color=colours[k],
            label=f"{c.id} draw",
        )
    # Visit marks in a band above the traces, one row per charger.
    top = max((max(lim) for lim in trace.limit_a), default=0.0)
    top = max(top, max((max(d) for d in trace.draw_a), default=0.0), 6.0)
    step = top * 0.08
    events = visit_events(result)
    for event in events:
        chargers.plot(
            event.time_s / 3600,
            top * 1.08 + step * event.charger,
            marker=_MARKERS[event.kind],
            color=colours[event.charger],
            markeredgecolor="black",
            markeredgewidth=0.5,
            linestyle="none",
        )
    for kind in _MARKERS:  # the legend's marks in grey: the colour is the charger's
        if any(e.kind == kind for e in events):
            chargers.plot(
                [], [], marker=_MARKERS[kind], color="grey", ls="none", label=_LABELS[kind]
            )
    chargers.set_ylim(0, top * 1.08 + step * (len(sc.chargers) + 0.5))
    chargers.set_ylabel("A per phase")
    chargers.legend(**outside)

    grid = axes[2]
    for p, name in enumerate(PHASE_NAMES[: sc.site.phases]):
        grid.plot(hours, [g[p] for g in trace.grid_a], label=f"grid {name}", linewidth=0.8)
    grid.axhline(sc.site.main_breaker_a, color="red", linestyle="--", label="breaker")
    grid.set_ylabel("A (+ import)")
    grid.legend(**outside)

    if has_soc:
        soc = axes[3]
        soc.plot(
            hours,
            [s if s is not None else float("nan") for s in trace.battery_soc],
            label="SOC",
        )
        battery = sc.site.battery
        if battery is not None:
            soc.axhline(battery.soc_min, color="red", linestyle="--", label="soc_min")
            soc.axhline(battery.soc_target, color="green", linestyle="--", label="soc_target")
        soc.set_ylabel("battery SOC %")
        soc.set_ylim(0, 100)
        soc.legend(**outside)
    # A day that runs past midnight goes on at 00:00, not at hour 24, 25, ...
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{int(h) % 24:02d}:00"))
    axes[-1].set_xlabel("time of day")
    fig.suptitle(str(sc.path))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
