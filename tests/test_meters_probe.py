"""`evse-gateway probe` against real servers: what answers, what fits, what is silent."""

from __future__ import annotations

import asyncio
import sys

from gateway.meters.profile import builtin
from gateway.meters.served import ServedBus, Unit, image
from tests.conftest import ROOT
from tests.test_meters_helpers import METER_VALUES


async def _probe(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "probe",
        *args,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def test_probe_finds_the_meter_and_reports_a_silent_unit():
    async def scenario():
        words = image(builtin("sdm630").parts["meter"].registers, METER_VALUES)
        silent = Unit(7, dict(words), dead=True)
        bus = ServedBus([Unit(1, words), silent])
        port = await bus.start_tcp()
        try:
            code, out, _ = await _probe(
                "--host", "127.0.0.1", "--port", str(port), "--unit", "1", "--unit", "7"
            )
        finally:
            await bus.stop()
        assert code == 0, out
        assert "unit 1: sdm630 as grid: answers\n    current_l1_a=-10" in out
        # SDM630 floats read as Growatt integers give an absurd PV power
        assert "unit 1: growatt-sph as pv: answers, values do not fit" in out
        assert "unit 1: em340 as grid: FC4 0+80: exception 2" in out
        assert "unit 7: no answer within 0.3 s" in out
        assert len(silent.requests) == 1  # a silent unit is given up after one timeout

    asyncio.run(scenario())


def test_probe_rejects_bad_arguments_with_exit_2(cli):
    result = cli("probe", "--host", "127.0.0.1", "--port", "/dev/ttyUSB0")
    assert result.returncode == 2 and "TCP port number" in result.stderr
    result = cli("probe", "--port", "/dev/null", "--model", "sdm999")
    assert result.returncode == 2 and "unknown model sdm999" in result.stderr
    result = cli("probe")
    assert result.returncode == 2 and "--port" in result.stderr
