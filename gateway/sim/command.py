"""`evse-gateway simulate SCENARIO.toml`: a whole day of control, in seconds."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML file (see docs/simulation.md)")
    parser.add_argument("--csv", metavar="FILE", help="write the full time series as CSV")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the day (needs the [plot] extra: matplotlib)"
    )


def run(args: argparse.Namespace) -> int:
    from gateway.sim.report import summary, write_csv
    from gateway.sim.scenario import load_scenario
    from gateway.sim.simulation import simulate

    if args.plot:
        from gateway.sim.plot import PlotUnavailable, check_matplotlib

        try:
            check_matplotlib()
        except PlotUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    scenario = load_scenario(args.scenario)
    with ExitStack() as files:
        try:
            # Open the output first: a day is not simulated for nothing.
            csv_file = (
                files.enter_context(open(args.csv, "w", newline="", encoding="utf-8"))
                if args.csv
                else None
            )
        except OSError as exc:
            print(f"error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        result = simulate(scenario, trace=bool(args.csv or args.plot))
        print(summary(result))
        if csv_file is not None:
            write_csv(result, csv_file)
            print(f"  time series: {args.csv}")
    if args.plot:
        from gateway.sim.plot import save_plot

        try:
            save_plot(result, args.plot)
        except OSError as exc:
            print(f"error: cannot write {args.plot}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"  plot: {args.plot}")
    return 0
