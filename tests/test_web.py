"""The owner's page and REST API: the settings store, and `evse-gateway run` over real HTTP.

The daemon runs as a real process against a simulated site (a grid meter on a real
Modbus TCP socket, an OCPP charger holding a car); the test talks HTTP to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.export.overrides import ChargerOverride, Overrides
from gateway.model import Mode
from gateway.sessionlog import SessionLog, SessionTracker
from gateway.settings import FILE_NAME, OFF, ChargerLimits, SettingError, SettingsStore
from gateway.sim.ev import EV
from gateway.sim.live import LiveSite
from gateway.sim.site import Premises
from gateway.web.auth import FailedLogins, check_secret, hash_secret, set_key
from gateway.web.config import WebConfig
from tests.conftest import ROOT
from tests.test_e2e import flat, free_port
from tests.waiting import until

LIMITS = {"c1": ChargerLimits(6, 16), "c2": ChargerLimits(6, 32)}


def store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(tmp_path, LIMITS, 25)


def test_settings_last_across_a_new_store_and_a_bad_change_applies_nothing(tmp_path):
    first = store(tmp_path)
    first.set_charger("c1", mode="solar", max_a=10)
    first.set_site_limit(20)
    try:
        first.update({"chargers": {"c2": {"mode": "eco"}, "c1": {"max_current_a": 99}}})
    except SettingError as exc:
        assert exc.field == "chargers.c1.max_current_a"
    else:
        raise AssertionError("an out-of-range max was accepted")
    again = store(tmp_path)
    assert again.get("c1").mode is Mode.SOLAR and again.get("c1").max_a == 10
    assert again.get("c2").mode is None  # the refused document changed nothing
    assert again.site_limit_a == 20
    assert not [p for p in tmp_path.iterdir() if p.name != FILE_NAME]  # no temp files left


def test_a_corrupt_store_is_reported_and_ignored(tmp_path, caplog):
    (tmp_path / FILE_NAME).write_text('{"chargers": {"c1": {"mode": "sola')
    with caplog.at_level(logging.ERROR):
        s = store(tmp_path)
    assert s.get("c1").mode is None and s.site_limit_a is None
    assert "ignoring runtime settings" in caplog.text
    s.set_charger("c1", mode="eco")  # and the next change writes a good file again
    assert json.loads((tmp_path / FILE_NAME).read_text())["chargers"]["c1"]["mode"] == "eco"


def test_a_modbus_override_wins_over_the_runtime_setting_while_in_force():
    s = SettingsStore(None, LIMITS, 25)
    s.set_charger("c1", mode=OFF, max_a=10)
    s.set_site_limit(20)
    alone = s.layered(None)
    assert alone.charger("c1").enabled is False and alone.charger("c1").max_a == 10
    assert alone.site_current_a == 20
    modbus = Overrides(
        site_current_a=15, chargers={"c1": ChargerOverride(max_a=8, enabled=True, mode=Mode.ECO)}
    )
    both = s.layered(modbus)
    assert both.site_current_a == 15
    assert (both.charger("c1").max_a, both.charger("c1").enabled) == (8, True)
    assert both.charger("c1").mode is Mode.ECO


def test_changes_notify_subscribers():
    s = SettingsStore(None, LIMITS, 25)
    seen: list[str | None] = []
    s.subscribe(lambda st: seen.append(st.as_json()["chargers"]["c2"]["mode"]))
    s.set_charger("c2", mode="excess")
    assert seen == ["excess"]


def test_passwd_sets_the_hash_in_the_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[site]\nmain_breaker_a = 25\n\n[web]\nport = 8081\n\n[export]\nport = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "passwd", "-c", str(config), "--stdin"],
        input="sunny-day\n",
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, done.stderr
    web = load_config(config).web
    assert web.port == 8081 and check_secret("sunny-day", web.password_hash)
    assert not check_secret("sunny-night", web.password_hash)
    assert set_key(config.read_text(), "password_hash", "x").count("password_hash") == 1


def test_failed_logins_are_limited_per_client_and_forgotten_after_the_window():
    f = FailedLogins(allowed=3, window_s=60)
    for t in range(3):
        f.failed("10.0.0.9", t)
    assert f.blocked("10.0.0.9", 3) and not f.blocked("10.0.0.8", 3)
    assert not f.blocked("10.0.0.9", 64)


CONFIG = """
[site]
main_breaker_a = 25

[control]
cycle_s = 0.5
stale_after_s = 2
start_delay_s = 0
min_pause_s = 0
ramp_up_a_per_s = 50

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
port = {grid_port}
interval_s = 0.2

[ocpp]
host = "127.0.0.1"
port = {ocpp_port}
meter_interval_s = 1
refresh_s = 1
validity_s = 3

[export]
enabled = false

[web]
host = "127.0.0.1"
port = {web_port}
password_hash = "{password_hash}"
token_hash = "{token_hash}"

[state]
dir = "{state_dir}"

[[chargers]]
id = "c1"
mode = "standard"
max_a = 16
"""
TOKEN = "script-token-123"


@asynccontextmanager
async def daemon(config: Path, log: Path) -> AsyncIterator[subprocess.Popen]:
    with open(log, "a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stderr=out,
        )
    try:
        yield process
    finally:
        process.terminate()
        # Waited for off the loop: the simulated charger must answer the close handshake.
        await asyncio.to_thread(process.wait, 10)


def test_rest_changes_a_mode_the_charger_follows_and_it_survives_a_restart(tmp_path):
    async def scenario() -> None:
        web_port, ocpp_port = free_port(), free_port()
        config_path = tmp_path / "gateway.toml"
        values = dict(
            grid_port=1,
            ocpp_port=ocpp_port,
            web_port=web_port,
            password_hash=hash_secret("owner-pw", 1000),
            token_hash=hash_secret(TOKEN, 1000),
            state_dir=tmp_path / "state",
        )
        config_path.write_text(CONFIG.format(**values))
        live = LiveSite(
            load_config(config_path),
            Premises(load_config(config_path).site, flat(1000.0)),
            versions={"c1": "2.0.1"},
            cars={"c1": EV(max_a=16, phases=3, energy_wanted_wh=1e6)},
            arrivals_s={"c1": 0.0},
            meter_interval_s=1.0,
        )
        await live.start_meters()
        config_path.write_text(CONFIG.format(**(values | {"grid_port": live.grid.port})))
        base = f"http://127.0.0.1:{web_port}/api/v1"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        point = None
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.get(f"{base}/state") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            async def c1() -> dict:
                async with http.get(f"{base}/chargers") as r:
                    return (await r.json())[0]

            async def c1_until(key: str, value: object) -> None:
                for _ in range(200):
                    if (await c1())[key] == value:
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"c1 {key} never {value}: {await c1()}")

            async def wait_up(process: subprocess.Popen) -> None:
                for _ in range(200):
                    assert process.poll() is None, (tmp_path / "log").read_text()
                    if await up():
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError("the web server did not come up")

            async with daemon(config_path, tmp_path / "log") as process:
                await wait_up(process)
                await live.connect_chargers(ocpp_port)
                live.start_ticking(0.05)
                point = live.station("c1").point
                await c1_until("status", "Charging")
                await c1_until("allocated_a", 16)
                await until(lambda: point.installs > 0, 10, "profiles installed")
                await until(lambda: point.effective_limit_a() == 16, 10, "16 A in standard")
                # Writes without the password or a token are refused, and so is bad input.
                off = {"chargers": {"c1": {"mode": OFF}}}
                async with http.put(f"{base}/settings", json=off) as r:
                    assert r.status == 401
                bad = {"chargers": {"c1": {"mode": "off"}, "nope": {"mode": "eco"}}}
                async with http.put(f"{base}/settings", json=bad, headers=bearer) as r:
                    assert r.status == 422 and (await r.json())["field"] == "chargers.nope"
                async with http.get(f"{base}/settings") as r:
                    assert (await r.json())["chargers"]["c1"]["mode"] is None  # nothing applied
                async with http.put(f"{base}/settings", json=off, headers=bearer) as r:
                    assert r.status == 200, await r.text()
                await until(lambda: point.effective_limit_a() == 0, 10, "0 A when off")
                assert (await c1())["setting"]["mode"] == OFF
                await c1_until("allocated_a", 0)
            connections, installs = point.connections, point.installs
            async with daemon(config_path, tmp_path / "log") as process:
                await wait_up(process)
                await until(lambda: point.connections > connections, 10, "charger reconnects")
                async with http.get(f"{base}/settings") as r:
                    assert (await r.json())["chargers"]["c1"]["mode"] == OFF
                await c1_until("online", True)
                await c1_until("allocated_a", 0)
                await until(lambda: point.installs > installs, 10, "profiles sent again")
                assert point.effective_limit_a() == 0
                # The CLI goes through the same API: without the token it is refused,
                # with it the change is in force.
                web_url = base.removesuffix("/api/v1")
                cli = [sys.executable, "-m", "gateway", "settings", "--url", web_url]
                env = {k: v for k, v in os.environ.items() if k != "EVSE_GATEWAY_TOKEN"}
                refused = await asyncio.to_thread(
                    subprocess.run, [*cli, "c1.mode=eco"], capture_output=True, text=True, env=env
                )
                assert refused.returncode == 2 and "401" in refused.stderr, refused.stderr
                taken = await asyncio.to_thread(
                    subprocess.run,
                    [*cli, "c1.mode=eco", "c1.max_current_a=10"],
                    capture_output=True,
                    text=True,
                    env=env | {"EVSE_GATEWAY_TOKEN": TOKEN},
                )
                assert taken.returncode == 0, taken.stderr
                assert json.loads(taken.stdout)["chargers"]["c1"] == {
                    "mode": "eco",
                    "max_current_a": 10.0,
                }
                await c1_until("mode", "eco")
                await until(lambda: point.effective_limit_a() == 6, 20, "eco minimum 6 A")
                # The page's login: a wrong password is refused and rate-limited.
                statuses = []
                for _ in range(6):
                    async with http.post(f"{base}/login", json={"password": "guess"}) as r:
                        statuses.append(r.status)
                assert statuses == [401] * 5 + [429]
                async with http.post(f"{base}/login", json={"password": "owner-pw"}) as r:
                    assert r.status == 429  # same client, still inside the window
            await live.stop()
        assert "failed login from 127.0.0.1" in (tmp_path / "log").read_text()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_a_session_is_recorded_with_the_energy_the_car_took(tmp_path):
    async def scenario() -> None:
        config_path = tmp_path / "gateway.toml"
        hashes = dict(password_hash=hash_secret("pw", 1000), token_hash=hash_secret("t", 1000))
        values = dict(grid_port=1, ocpp_port=0, web_port=0, state_dir=tmp_path, **hashes)
        config_path.write_text(CONFIG.format(**values))
        config = load_config(config_path)
        car = EV(max_a=16, phases=3, energy_wanted_wh=40, lag_s=0.2)
        live = LiveSite(
            config,
            Premises(config.site, flat(1000.0)),
            versions={"c1": "2.0.1"},
            cars={"c1": car},
            arrivals_s={"c1": 0.0},
            meter_interval_s=0.5,
        )
        await live.start_meters()
        gateway = Gateway(live.gateway_config(state_dir=str(tmp_path / "state")))
        stop = asyncio.Event()
        try:
            await gateway.start()
            await live.connect_chargers(gateway.central.port)
            live.start_ticking(0.05)
            cycling = asyncio.create_task(gateway.run(stop))
            await until(lambda: car.full, 30, "the car full")
            point = live.station("c1").point
            # The last MeterValues reached a cycle (unplugging ends the session at the next).
            await until(
                lambda: gateway.tracker.open["c1"].energy_wh >= car.delivered_wh - 0.5,
                10,
                lambda: f"the register's final count in the session: {gateway.tracker.open}",
            )
            await point.unplug()
            log = gateway.sessions
            await until(lambda: any(r["end_unix"] for r in log.query("c1")), 10, "a session row")
            stop.set()
            await cycling
        finally:
            stop.set()
            await live.stop()
            await gateway.stop()
        (row,) = SessionLog(tmp_path / "state", 30).query()
        assert row["charger"] == "c1" and row["end_unix"] > row["start_unix"]
        assert abs(row["energy_wh"] - car.delivered_wh) <= 1.0  # the register's resolution
        # No PV or battery meter on this site: the split's integrated power is all grid.
        assert row["pv_wh"] == row["battery_wh"] == 0
        assert row["grid_wh"] == pytest.approx(car.delivered_wh, rel=0.2)
        assert row["peak_a"] == pytest.approx(16, abs=0.5)
        assert row["id_tag"] == "SIMTAG"  # the token from the 2.0.1 TransactionEvent Started

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_energy_falls_back_to_integrated_power_and_is_split_by_supply():
    tracker = SessionTracker()
    assert tracker.observe(0, 0, [("c1", "Charging", 0, None, 0, None)], 0, 0, 0) == []
    for t in range(1, 61):  # a minute at 3.6 kW, supplied 1/4 PV, 1/4 battery, 1/2 grid
        row = ("c1", "Charging", 3600, None, 5.2, "TAG")  # the tag told after the start
        saved = tracker.observe(t, 1, [row], 1000, 1000, 2000)
    assert saved and saved[0].end_unix is None  # an open session is saved each minute
    (ended,) = tracker.observe(61, 1, [("c1", "Available", 0, None, 0, None)], 0, 0, 0)
    assert ended.energy_wh == pytest.approx(60) and ended.end_unix == 61
    assert (ended.pv_wh, ended.battery_wh, ended.grid_wh) == pytest.approx((15, 15, 30))
    assert ended.id_tag == "TAG"
    assert tracker.open == {}


def test_the_docs_name_every_route():
    from gateway.web.server import WebServer

    server = WebServer(
        WebConfig,
        None,  # type: ignore[arg-type]  # only the routes are read: no hub needed
        SettingsStore(None, LIMITS, 25),
        SessionLog(None, 1),
    )
    routes = {
        f"{r.method} {r.resource.canonical}"
        for r in server.app().router.routes()
        if r.method != "HEAD" and r.resource.canonical.startswith("/api/")
    }
    docs = (ROOT / "docs" / "web.md").read_text()
    documented = set(re.findall(r"^\| `((?:GET|PUT|POST) /api/v1/\w+)`", docs, re.M))
    assert routes == documented


def test_a_reload_takes_a_new_password_but_not_a_new_port(tmp_path):
    path = tmp_path / "gateway.toml"
    values = dict(grid_port=1, ocpp_port=0, web_port=0, state_dir=tmp_path, token_hash="x")

    def config(**changes: object):
        path.write_text(CONFIG.format(**(values | {"password_hash": "old"} | changes)))
        return load_config(path)

    async def scenario() -> None:  # the meter clients are built in a running loop
        gateway = Gateway(config())
        assert gateway.reload(config(password_hash="new"))
        assert gateway.web is not None and gateway.web.config().password_hash == "new"
        assert not gateway.reload(config(password_hash="new", web_port=8099))
        assert gateway.web.config().port == 0

    asyncio.run(scenario())


def test_the_settings_command_builds_the_api_document_and_refuses_bad_words():
    from gateway.web.settings_command import UsageError, document

    assert document(["g.mode=solar", "g.max_current_a=10", "site.current_limit_a=config"]) == {
        "chargers": {"g": {"mode": "solar", "max_current_a": 10.0}},
        "site": {"current_limit_a": None},
    }
    for bad in ("g.mode", "mode=eco", "g.colour=red", "site.mode=eco", "g.max_current_a=ten"):
        with pytest.raises(UsageError):
            document([bad])
    no_gateway = subprocess.run(
        [sys.executable, "-m", "gateway", "settings", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
    )
    assert no_gateway.returncode == 1 and "no gateway answered" in no_gateway.stderr
