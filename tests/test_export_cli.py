"""`registers` and `status`: the generated docs are current; status reads a live server."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.conftest import ROOT, run_cli
from tests.test_export_server import charger, run, running, site_state, writable, write


def test_docs_registers_md_is_current() -> None:
    result = run_cli("registers", "--format", "md")
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "docs" / "registers.md").read_text(encoding="utf-8")
    assert result.stdout == committed, (
        "docs/registers.md is stale: run "
        "`PYTHONPATH=. python -m gateway registers --format md > docs/registers.md`"
    )
    assert "-0 -B -t 4:float -r 100" in committed and "modbus:\n  - name: evse_gateway" in committed


def test_registers_csv_is_the_map_file() -> None:
    result = run_cli("registers", "--format", "csv")
    map_file = ROOT / "gateway" / "export" / "registers.csv"
    assert result.returncode == 0 and result.stdout == map_file.read_text(encoding="utf-8")
    assert run_cli("registers", "--format", "xml").returncode == 2


async def status(port: int) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "status",
        "--port",
        str(port),
        "--timeout",
        "2",
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def test_home_assistant_example_is_complete() -> None:
    """Every sensor has what HA needs for history and the energy panel; writing is shown."""
    text = (ROOT / "docs" / "registers.md").read_text(encoding="utf-8")
    yaml = text.split("## Home Assistant", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    sensors = yaml.split("script:")[0].split("      - name: ")[1:]
    assert len(sensors) >= 9
    for sensor in sensors:
        assert "unique_id: evse_gateway_" in sensor, sensor
        assert "state_class: measurement" in sensor, sensor
        if 'unit_of_measurement: "W"' in sensor:
            assert "device_class: power" in sensor, sensor
    assert any("household consumption" in s for s in sensors)
    assert "action: modbus.write_register" in yaml
    assert "address: 500" in yaml and "value: 160" in yaml


def test_status_prints_site_and_chargers_of_a_running_gateway() -> None:
    async def body() -> None:
        async with running(writable()) as (server, client):
            server.publish(site_state(updated_unix=time.time()))
            assert await write(client, 500, 160) == 0
            assert await write(client, 1181, 0) == 0
            code, out, err = await status(server.port)
        assert code == 0, err
        lines = out.splitlines()
        assert "status: meters ok, OCPP ok, external limit active" in lines
        assert lines[1].startswith("cycle 7, updated ")
        grid = next(line for line in lines if line.strip().startswith("grid A"))
        assert grid.split()[2:5] == ["4.5", "-6.5", "8"]
        assert "overrides: site current 16 A, site power -" in out
        # Household is the house's consumption; the grid-minus-chargers figure is named apart.
        assert "household 3300 W (net of PV and battery 900 W)" in out
        # The charger table's current columns are the charger's own lines, named apart
        # from the site's phases.
        assert "line1 A" in out and "L1 A" not in out
        rows = [line.split() for line in lines if "wallbox-" in line]
        assert [r[1] for r in rows] == ["wallbox-0", "wallbox-1", "wallbox-2"]
        # Rounded as a display reads (10.25 A -> 10.2, 5601 W whole).
        assert rows[1][:8] == ["1", "wallbox-1", "yes", "Charging", "3", "solar", "9.5", "10.2"]
        assert rows[1][11] == "5601"
        assert "paused" in rows[1] and "paused" not in rows[0]
        assert " ".join(rows[0][-2:]) == "solar surplus"

    run(body)


def test_status_says_when_no_gateway_answers(tmp_path: Path) -> None:
    async def body() -> None:
        # a Modbus server that is not a gateway: right protocol, wrong map
        other = SimDevice(id=0, simdata=[SimData(0, count=200, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(other, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]
        try:
            code, _, err = await status(port)
        finally:
            await server.shutdown()
        assert code == 1 and "not an evse-gateway register map" in err
        code, _, err = await status(port)  # now nothing listens there
        assert code == 1
        assert err.strip() == f"error: 127.0.0.1:{port}: cannot connect " + (
            "(is the gateway running and [export] enabled?)"
        )

    run(body)


def test_status_says_offline_for_an_offline_charger_not_its_last_reason() -> None:
    async def body() -> None:
        async with running() as (server, _):
            state = site_state(updated_unix=time.time())
            chargers = (
                charger(0, control_state=1),
                charger(1, online=False, control_state=5),
                charger(2, online=False, control_state=3, assumed_a=16.0),
                charger(3, online=False, control_state=4, assumed_a=8.0),
                charger(4, control_state=2),
            )
            server.publish(replace(state, chargers=chargers))
            code, out, err = await status(server.port)
        assert code == 0, err
        rows = {line.split()[1]: line for line in out.splitlines() if "wallbox-" in line}
        assert rows["wallbox-1"].endswith(" offline")
        assert rows["wallbox-0"].endswith(" solar surplus")
        assert rows["wallbox-2"].endswith(" offline with a car: counted at 16 A (its last limit)")
        assert rows["wallbox-3"].endswith(" offline with a car: counted at 8 A (its failsafe)")
        assert rows["wallbox-4"].endswith(" uncontrolled: its measured draw is fixed load")

    run(body)
