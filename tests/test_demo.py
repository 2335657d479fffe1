"""`evse-gateway demo` as a newcomer runs it, into a pipe: events, the table with its
legend, and a closing line."""

from __future__ import annotations

import subprocess
import sys

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
    # A charger's first limit is an event line, with the reason.
    assert any(": Available -> " in line and "(" in line for line in out.splitlines()), out
    assert out.rstrip().splitlines()[-1].startswith("demo stopped after ")
