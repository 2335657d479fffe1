"""The register map as Markdown (docs/registers.md is this output, committed).

Everything here is generated from `registers.csv` and `gateway.model`, so the docs, the
ready-made mbpoll lines and the Home Assistant example cannot disagree with the server.
"""

from __future__ import annotations

from gateway.export.config import ExportConfig
from gateway.export.regmap import (
    CHARGER_BASE,
    CHARGER_BLOCK,
    CHARGER_STRIDE,
    MAP_VERSION,
    MAX_CHARGERS,
    Register,
    RegisterMap,
)
from gateway.model import STATUSES, Mode, Reason

_TITLES = {
    "header": "Header",
    "site": "Site (read only)",
    "command": "Commands (writable where access is RW)",
}
# Registers shown in the Home Assistant example: the ones dashboards start with.
_HA_SITE = (
    "grid_power",
    "pv_power",
    "battery_power",
    "battery_soc",
    "household_consumption",
    "ev_power",
    "headroom_l1",
)
# unit -> Home Assistant device_class, so dashboards and the energy panel know the sensor.
_HA_CLASS = {"W": "power", "A": "current", "V": "voltage", "%": "battery", "Wh": "energy"}
_HA_CHARGER = ("allocated_current", "power")
_HOST = "192.168.1.50"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def _range_text(row: Register) -> str:
    if not row.writable:
        return ""
    return row.range.replace("fuse_w", "fuse W").replace("..", " to ")


def _table(rows: list[Register], charger: bool) -> list[str]:
    head = "| offset | charger 0 | " if charger else "| address | "
    lines = [
        head + "name | type | unit | scale | access | range | since | description |",
        "|---" * (10 if charger else 9) + "|",
    ]
    for r in rows:
        where = f"+{r.address} | {CHARGER_BASE + r.address}" if charger else str(r.address)
        if r.size > 1:
            last = r.address + r.size - 1
            where = (
                f"+{r.address}..+{last} | {CHARGER_BASE + r.address}..{CHARGER_BASE + last}"
                if charger
                else f"{r.address}..{last}"
            )
        scale = "" if r.scale == 1 else f"{r.scale:g}"
        cells = (r.name, r.type, r.unit, scale, r.access, _range_text(r), r.since, r.description)
        lines.append(f"| {where} | " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _mbpoll(port: int, unit: int) -> list[str]:
    base = f"mbpoll -m tcp -p {port} -a {unit} -0"
    c0 = CHARGER_BASE
    return [
        "```sh",
        "# header: marker, version, hash ... cycle counter (30-31), status bits (35)",
        f"{base} -t 4 -r 0 -c 40 -1 {_HOST}",
        "# site block as floats: 100..148 (-c counts floats; -B = big-endian word order)",
        f"{base} -B -t 4:float -r 100 -c 25 -1 {_HOST}",
        "# charger 0: status, phases, mode, reason (18-21), then its floats from 22",
        f"{base} -t 4 -r {c0 + 18} -c 4 -1 {_HOST}",
        f"{base} -B -t 4:float -r {c0 + 22} -c 6 -1 {_HOST}",
        "# write: site current limit 16.0 A (scale 10), then a heartbeat every < 60 s",
        f"{base} -t 4 -r 500 {_HOST} 160",
        f"{base} -t 4 -r 503 {_HOST} 1",
        "# write: charger 0 mode solar (2); 65535 hands control back to the config",
        f"{base} -t 4 -r {c0 + 82} {_HOST} 2",
        "```",
    ]


def _ha_sensor(name: str, row: Register, address: int) -> list[str]:
    data_type = {"float32": "float32", "uint32": "uint32"}.get(row.type, "uint16")
    lines = [
        f'      - name: "evse-gateway {name}"',
        f"        unique_id: evse_gateway_{name.replace(' ', '_')}",
        f"        address: {address}",
        "        input_type: input",
        f"        data_type: {data_type}",
    ]
    if row.unit:
        lines.append(f'        unit_of_measurement: "{row.unit}"')
    if row.unit in _HA_CLASS:
        lines.append(f"        device_class: {_HA_CLASS[row.unit]}")
    state_class = "total_increasing" if row.unit == "Wh" else "measurement"
    lines.append(f"        state_class: {state_class}")
    if data_type == "float32":
        lines.append("        precision: 1")
    return lines


def _home_assistant(regmap: RegisterMap, port: int) -> list[str]:
    rows = {(r.block, r.name): r for r in regmap.rows}
    lines = [
        "```yaml",
        "modbus:",
        "  - name: evse_gateway",
        "    type: tcp",
        f"    host: {_HOST}",
        f"    port: {port}",
        "    sensors:",
    ]
    cycle = rows[("header", "cycle_counter")]
    lines += _ha_sensor("cycle counter", cycle, cycle.address)
    for name in _HA_SITE:
        row = rows[("site", name)]
        lines += _ha_sensor(name.replace("_", " "), row, row.address)
    for name in _HA_CHARGER:
        row = rows[(CHARGER_BLOCK, name)]
        label = "charger 0 " + name.replace("_", " ")
        lines += _ha_sensor(label, row, CHARGER_BASE + row.address)
    limit = rows[("command", "site_current_limit")]
    lines += [
        "",
        "# Writing needs writes_enabled = true (and this host in allowed_clients): cap the",
        f"# site at 16 A per phase ({limit.name}, scale {limit.scale:g}); the limit lapses",
        "# after override_timeout_s unless written again, so repeat it from an automation.",
        "script:",
        "  evse_gateway_cap_16a:",
        "    sequence:",
        "      - action: modbus.write_register",
        "        data:",
        "          hub: evse_gateway",
        f"          address: {limit.address}",
        f"          value: {round(16 * limit.scale)}",
    ]
    return [*lines, "```"]


def _codes() -> list[str]:
    lines = ["| code | OCPP status |", "|---|---|", "| 0 | unknown |"]
    lines += [f"| {i} | {s} |" for i, s in enumerate(STATUSES, start=1)]
    lines += ["", "| code | mode |", "|---|---|"]
    lines += [f"| {m.code} | {m.value} |" for m in sorted(Mode, key=lambda m: m.code)]
    lines += ["", "| code | reason |", "|---|---|"]
    lines += [f"| {r.code} | {r.text} |" for r in Reason]
    return lines


def to_markdown(regmap: RegisterMap) -> str:
    default = ExportConfig()
    port, unit = default.port, default.unit_id
    major, minor = MAP_VERSION
    out = [
        "# Modbus TCP register map",
        "",
        "Generated by `evse-gateway registers --format md` from `gateway/export/registers.csv`;",
        "do not edit by hand (a test fails when this file is out of date). How to enable and",
        "test the server, and how writes work: [export.md](export.md).",
        "",
        f"- Map version **{major}.{minor}**, map hash **0x{regmap.hash:08X}** (registers 2-5).",
        "- Addresses are **0-based** (what goes on the wire; HA, Node-RED, pymodbus, evcc).",
        "  1-based tools: register number = address + 1 (mbpoll without `-0`, many PLCs).",
        "- FC3 (holding) and FC4 (input) read the **same** image; writes use FC6 or FC16.",
        f"- Unit id {unit} (config `unit_id`); 0 and 255 are answered too; other ids get",
        "  exception 0x0B.",
        "- float32: IEEE 754, **big-endian word order** (high word first, ABCD); NaN = unknown.",
        "- Integers: register = value x scale. Unknown or none: 65535 (uint16), 0x8000",
        "  (int16), 4294967295 (uint32).",
        "- Signs: grid import +, PV production +, battery discharge +, charger consumption +.",
        "- Every address from 0 to the end of the last charger block is defined: any window",
        "  of up to 125 registers can be read. Reserved registers read 0.",
        "- Write ranges: `fuse` is `breaker_limit` (142), `fuse W` is `breaker_limit_power`",
        "  (144); `min` and `max` are the charger's `min_current` and `max_current`. Writing",
        "  65535 clears a setpoint. Out of range: exception 03; read-only address: 02;",
        "  writes disabled or client not allowed: 01.",
        "- The image changes once per control cycle as a whole; `cycle_counter` (30-31) moves",
        "  every cycle, so a reader can tell fresh data from a stalled gateway.",
        "",
    ]
    for block, title in _TITLES.items():
        rows = list(regmap.block(block))
        first, last = rows[0].address, rows[-1].address + rows[-1].size - 1
        out += [f"## {title}: {first}-{last}", "", *_table(rows, charger=False), ""]
    last_block = CHARGER_BASE + (MAX_CHARGERS - 1) * CHARGER_STRIDE
    out += [
        f"## Charger blocks: charger i at {CHARGER_BASE} + {CHARGER_STRIDE} x i"
        f" (i = 0-{MAX_CHARGERS - 1}, the last at {last_block})",
        "",
        "Blocks follow the order of `[[chargers]]` in the config; `charger_count` (22) says",
        "how many are in use. Unused blocks read an empty id and unknown values.",
        "",
        *_table(list(regmap.block(CHARGER_BLOCK)), charger=True),
        "",
        "## Codes",
        "",
        *_codes(),
        "",
        "## mbpoll",
        "",
        "`-0` makes mbpoll use 0-based addresses as above; `-B` reads floats big-endian.",
        "",
        *_mbpoll(port, unit),
        "",
        "## Home Assistant",
        "",
        "Unit id 1 is Home Assistant's default, so the sensors need no unit key. FC4",
        "(`input_type: input`) and FC3 (`holding`) read the same values.",
        "",
        *_home_assistant(regmap, port),
        "",
    ]
    return "\n".join(out)
