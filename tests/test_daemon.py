"""`evse-gateway run` as a real process: systemd notify, SIGHUP reload, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.meters.profile import builtin
from gateway.meters.served import ServedBus, Unit, image
from tests.conftest import ROOT
from tests.test_meters_helpers import METER_VALUES
from tests.waiting import until

CONFIG = """
[site]
main_breaker_a = 25

[control]
cycle_s = 0.5
stale_after_s = 2

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
port = {grid_port}

[ocpp]
host = "127.0.0.1"
port = 0

[export]
enabled = false

[web]
host = "127.0.0.1"
port = 0

[state]
dir = "{state_dir}"

[[chargers]]
id = "c1"
max_a = {max_a}
"""


def test_run_notifies_systemd_reloads_on_sighup_and_stops_cleanly_on_sigterm(tmp_path):
    async def scenario() -> None:
        registers = builtin("sdm630").parts["meter"].registers
        meter = ServedBus([Unit(1, image(registers, METER_VALUES))])
        grid_port = await meter.start_tcp()
        config = tmp_path / "config.toml"
        config.write_text(CONFIG.format(grid_port=grid_port, max_a=16, state_dir=tmp_path))
        notify_path = str(tmp_path / "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.setblocking(False)
        messages: list[str] = []

        def received() -> list[str]:
            while True:
                try:
                    messages.append(notify.recv(4096).decode())
                except BlockingIOError:
                    return messages

        log = open(tmp_path / "daemon.log", "w+")  # noqa: SIM115 (read back below)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=notify_path),
            stderr=log,
        )
        try:
            await until(lambda: any("READY=1" in m for m in received()), 20, "READY=1")
            await until(
                lambda: sum("WATCHDOG=1" in m for m in received()) >= 3, 10, "watchdog pings"
            )
            config.write_text(CONFIG.format(grid_port=grid_port, max_a=20, state_dir=tmp_path))
            daemon.send_signal(signal.SIGHUP)
            await until(lambda: "charger settings applied" in _read(log), 10, "the reload")
            stopped = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            await until(lambda: daemon.poll() is not None, 10, "the daemon to exit")
            assert daemon.returncode == 0
            assert time.monotonic() - stopped < 5
            assert any("STOPPING=1" in m for m in received())
            assert "chargers keep their failsafe profile" in _read(log)
            # Exporting 10 A on L1: the periodic summary line is in the journal from cycle 1.
            assert "summary: grid -10.0/5.5/2.2 A; chargers all at 0 A" in _read(log)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            notify.close()
            log.close()
            await meter.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def _read(log) -> str:
    log.flush()
    return Path(log.name).read_text()


def test_run_refuses_a_bad_config_with_exit_2_naming_the_line(tmp_path):
    config = tmp_path / "config.toml"
    text = CONFIG.format(grid_port=502, max_a=16, state_dir=tmp_path).replace(
        "max_a = 16", "max_a = 16\nmax = 3"
    )
    config.write_text(text)
    line = text.splitlines().index("max = 3") + 1
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{config}:{line}: chargers[0].max: unknown key" in result.stderr


def test_reload_takes_charger_settings_but_not_what_the_chargers_were_given_on_connect(tmp_path):
    from dataclasses import replace

    from gateway.config import load_config
    from gateway.daemon import Gateway

    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(grid_port=502, max_a=16, state_dir=tmp_path))
    config = load_config(path)
    (charger,) = config.chargers
    bigger = replace(
        config, chargers=(replace(charger, charger=charger.charger._replace(max_a=20)),)
    )
    other_failsafe = replace(bigger, chargers=(replace(bigger.chargers[0], failsafe_a=10.0),))

    async def scenario() -> None:
        gateway = Gateway(config)  # built, not started: nothing listens
        assert gateway.reload(bigger)
        assert gateway.hub.config.chargers[0].charger.max_a == 20
        # The failsafe current is also in each charger's permanent OCPP profile: restart.
        assert not gateway.reload(other_failsafe)
        assert gateway.hub.config.chargers[0].failsafe_a == charger.failsafe_a

    asyncio.run(scenario())
