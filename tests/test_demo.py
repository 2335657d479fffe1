"""`evse-gateway demo` as a newcomer runs it, into a pipe: events, the table with its
legend, and a closing line."""

from __future__ import annotations

import subprocess
import sys

from gateway.sim.demo_command import DEMO as DEMO_FILES
from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import simulate

DEMO = [sys.executable, "-m", "gateway", "demo", "--free-ports"]


def test_the_demo_prints_events_the_table_with_a_legend_and_a_closing_line():
    result = subprocess.run(
        [*DEMO, "--duration", "8", "--every", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "signs: grid + import / - export" in out  # the legend under the site line
    assert "household" in out and "charger   mode" in out
    assert "switched to 1 phase instead of stopped" in out  # what to watch for
    # A charger's first limit is an event line, with the reason.
    assert any(": Available -> " in line and "(" in line for line in out.splitlines()), out
    assert out.rstrip().splitlines()[-1].startswith("demo stopped after ")


def _clock(hh_mm: str) -> float:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def test_the_demo_day_switches_the_solar_car_to_one_phase_and_back_instead_of_stopping():
    """The demo's day offline, at its own 1 s cycle: the Solar car "visitor" goes to 1
    phase when the cloud comes (12:55), back to 3 once it has gone (13:30), and to 1
    again as the afternoon sun sinks; it never stops for want of sun."""
    result = simulate(load_scenario(str(DEMO_FILES / "site.toml")), trace=True)
    k = [c.id for c in result.scenario.chargers].index("visitor")
    trace = result.trace
    assert trace is not None
    pauses = []
    last = ""
    for now, details in zip(trace.times, trace.reason, strict=True):
        if details[k] != last and details[k].startswith("pausing to switch to "):
            pauses.append((now, int(details[k].removeprefix("pausing to switch to ")[0])))
        last = details[k]
    assert [phases for _, phases in pauses] == [1, 3, 1], pauses
    (to_one, _), (to_three, _), (evening, _) = pauses
    assert _clock("12:55") <= to_one < _clock("13:05")
    assert _clock("13:25") <= to_three < _clock("13:40")
    assert evening > _clock("15:00")
    visitor = result.tally.chargers[k]
    assert visitor.switches == 3
    assert (visitor.starts, visitor.stops) == (1, 0)
