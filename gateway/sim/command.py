"""`evse-gateway simulate SCENARIO.toml`: a whole day of control, in seconds."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML file (see docs/simulation.md)")
    parser.add_argument("--csv", metavar="FILE", help="write the full time series as CSV")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the day (needs the [plot] extra: matplotlib)"
    )


def run(args: argparse.Namespace) -> int:
    from gateway.sim.report import save_csv, summary
    from gateway.sim.scenario import load_scenario
    from gateway.sim.simulation import simulate
    from gateway.tomlfile import TomlError

    if args.plot:
        from gateway.sim.plot import PlotUnavailable, check_matplotlib

        try:
            check_matplotlib()
        except PlotUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        scenario = load_scenario(args.scenario)
    except TomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = simulate(scenario, trace=bool(args.csv or args.plot))
    print(summary(result))
    try:
        if args.csv:
            save_csv(result, args.csv)
            print(f"  time series: {args.csv}")
        if args.plot:
            from gateway.sim.plot import save_plot

            save_plot(result, args.plot)
            print(f"  plot: {args.plot}")
    except OSError as exc:
        print(f"error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
