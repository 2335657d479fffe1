"""`evse-gateway probe` against real servers: what answers, what fits, what is silent."""

from __future__ import annotations

import asyncio
import socket
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


def test_probe_recommends_the_meter_and_reports_a_silent_unit():
    async def scenario():
        words = image(builtin("sdm630").parts["meter"].registers, METER_VALUES)
        silent = Unit(7, dict(words), dead=True)
        bus = ServedBus([Unit(1, words), silent])
        port = await bus.start_tcp()
        try:
            args = ("--host", "127.0.0.1", "--port", str(port), "--unit", "1", "--unit", "7")
            code, out, _ = await _probe(*args)
            verbose_code, verbose, _ = await _probe(*args, "-v")
        finally:
            await bus.stop()
        assert code == 0 and verbose_code == 0, out
        assert "unit 1: sdm630 as grid: answers\n    current_l1 -10.00 A, current_l2 5.50 A" in out
        assert "energy_import 1234.50 kWh" in out and "e+" not in out
        # The SDM120 and SDM72 profiles fit an SDM630 too; the fullest decode is named.
        assert "\nrecommended: sdm630 as grid on unit 1 (13 plausible values; also fit" in out
        block = out.split("recommended:", 1)[1].splitlines()[1:]
        assert block == [
            "[[meters]]",
            'name = "grid"',
            'model = "sdm630"',
            'role = "grid"',
            'host = "127.0.0.1"',
            f"port = {port}",
            "unit_id = 1",
        ]
        assert "unit 7: no answer within 0.3 s" in out
        # Misfits only with -v: SDM630 floats read as Growatt integers, absent registers.
        assert "do not fit" not in out and "exception 2" not in out
        assert "unit 1: growatt-sph as pv: answers, values do not fit" in verbose
        assert "unit 1: em340 as grid: FC4 0+80: exception 2" in verbose
        assert len(silent.requests) == 2  # a silent unit is given up after one timeout

    asyncio.run(scenario())


def test_probe_says_why_a_port_cannot_be_opened(cli):
    result = cli("probe", "--port", "/dev/ttyUSB-none")
    assert result.returncode == 1
    assert "cannot open /dev/ttyUSB-none" in result.stdout
    assert "/dev/ttyUSB-none does not exist (adapter not plugged in?" in result.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = cli("probe", "--host", "127.0.0.1", "--port", str(closed))
    assert result.returncode == 1
    assert f"127.0.0.1:{closed}: Connection refused" in result.stdout


def test_probe_rejects_bad_arguments_with_exit_2(cli):
    result = cli("probe", "--host", "127.0.0.1", "--port", "/dev/ttyUSB0")
    assert result.returncode == 2 and "TCP port number" in result.stderr
    result = cli("probe", "--port", "/dev/null", "--model", "sdm999")
    assert result.returncode == 2 and "unknown model sdm999" in result.stderr
    result = cli("probe")
    assert result.returncode == 2 and "--port" in result.stderr
