"""`--plot`: a picture of the simulated day (matplotlib, the optional `[plot]` extra)."""

from __future__ import annotations

from pathlib import Path

from gateway.model import PHASE_NAMES
from gateway.sim.simulation import Result


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
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(12, 2.6 * rows))

    power = axes[0]
    power.plot(hours, [sum(h) / 1000 for h in trace.household_w], label="household")
    power.plot(hours, [p / 1000 for p in trace.pv_w], label="PV")
    if has_soc:
        power.plot(hours, [b / 1000 for b in trace.battery_w], label="battery (+ discharge)")
    power.set_ylabel("kW")
    power.legend(loc="upper left", fontsize="small")

    chargers = axes[1]
    for k, c in enumerate(sc.chargers):
        line = chargers.plot(hours, [lim[k] for lim in trace.limit_a], label=f"{c.id} limit")
        chargers.plot(
            hours,
            [d[k] for d in trace.draw_a],
            linestyle=":",
            color=line[0].get_color(),
            label=f"{c.id} draw",
        )
    chargers.set_ylabel("A per phase")
    chargers.legend(loc="upper left", fontsize="small", ncol=2)

    grid = axes[2]
    for p, name in enumerate(PHASE_NAMES[: sc.site.phases]):
        grid.plot(hours, [g[p] for g in trace.grid_a], label=f"grid {name}", linewidth=0.8)
    grid.axhline(sc.site.main_breaker_a, color="red", linestyle="--", label="breaker")
    grid.set_ylabel("A (+ import)")
    grid.legend(loc="upper left", fontsize="small")

    if has_soc:
        soc = axes[3]
        soc.plot(hours, [s if s is not None else float("nan") for s in trace.battery_soc])
        soc.set_ylabel("battery SOC %")
        soc.set_ylim(0, 100)
    # A day that runs past midnight goes on at 00:00, not at hour 24, 25, ...
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{int(h) % 24:02d}:00"))
    axes[-1].set_xlabel("time of day")
    fig.suptitle(str(sc.path))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
