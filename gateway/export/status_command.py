"""`evse-gateway status [--host H] [--port P]`: read a running gateway like any SCADA.

Reads the header, site, command and charger blocks over Modbus TCP, decodes them with
this installation's map and prints the site and a charger table. Exit 1 when the
gateway cannot be reached or does not answer with this map.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from typing import Any

from gateway.export.config import ExportConfig
from gateway.export.regmap import CHARGER_BASE, CHARGER_STRIDE, MAP_VERSION, MARKER

_BITS = ("meters ok", "OCPP ok", "failsafe active", "external limit active", "data stale")
# One read per charger covers its values and its setpoints (offsets 0..82).
_CHARGER_READ = 83


class StatusError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=ExportConfig().port, help="Modbus TCP port (1502)"
    )
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id (1)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per request (3)")


def run(args: argparse.Namespace) -> int:
    # pymodbus logs its own connect errors; this command reports them once, itself.
    logging.getLogger("pymodbus").addHandler(logging.NullHandler())
    try:
        print(asyncio.run(_status(args)))
    except StatusError as exc:
        print(f"error: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _status(args: argparse.Namespace) -> str:
    from pymodbus.client import AsyncModbusTcpClient

    from gateway.export.regmap import load_map

    regmap = load_map()
    client = AsyncModbusTcpClient(args.host, port=args.port, timeout=args.timeout, retries=1)
    if not await client.connect():
        raise StatusError("cannot connect (is the gateway running and [export] enabled?)")
    try:

        async def read(address: int, count: int) -> list[int]:
            rr = await client.read_input_registers(address, count=count, device_id=args.unit)
            if rr.isError():
                raise StatusError(f"read {address}..{address + count - 1}: {rr}")
            return list(rr.registers)

        fixed = await read(0, 100) + await read(100, 68)
        header = regmap.values("header", fixed)
        if header["marker"] != MARKER:
            raise StatusError(f"not an evse-gateway register map (marker {header['marker']!r})")
        site = regmap.values("site", fixed)
        command = regmap.values("command", await read(500, 8), 500)
        chargers = []
        for slot in range(header["charger_count"] or 0):
            regs = await read(CHARGER_BASE + slot * CHARGER_STRIDE, _CHARGER_READ)
            chargers.append(regmap.values("charger", regs))
    finally:
        client.close()
    notes = []
    if header["map_hash"] != regmap.hash or header["map_version_major"] != MAP_VERSION[0]:
        notes.append(
            f"note: the gateway's map (version {header['map_version_major']}."
            f"{header['map_version_minor']}, hash 0x{header['map_hash']:08X}) differs from"
            f" this tool's (0x{regmap.hash:08X}); values are decoded with this tool's map"
        )
    return "\n".join(
        [
            *_header_lines(args, header),
            *notes,
            *_site_lines(site, command),
            *_charger_lines(chargers),
        ]
    )


def fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    # As a display reads: whole watts and volts above 100, one decimal below.
    if isinstance(value, float):
        text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}".removesuffix(".0")
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text


def _header_lines(args: argparse.Namespace, h: dict[str, Any]) -> list[str]:
    updated = h["updated"] or 0
    age = f" ({time.time() - updated:.0f} s ago)" if updated else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(updated)) if updated else "never"
    bits = h["status_bits"] or 0
    flags = [name for i, name in enumerate(_BITS) if bits & (1 << i)]
    return [
        f"evse-gateway {h['firmware']} at {args.host}:{args.port} unit {args.unit}, "
        f"map {h['map_version_major']}.{h['map_version_minor']}",
        f"cycle {h['cycle_counter']}, updated {when}{age}, cycle time {fmt(h['cycle_time'], 'ms')}",
        f"status: {', '.join(flags) or 'no flags set'}",
    ]


def _site_lines(s: dict[str, Any], c: dict[str, Any]) -> list[str]:
    def row(label: str, prefix: str, total: Any = None) -> str:
        cells = [fmt(s[f"{prefix}_l{i}"]) for i in (1, 2, 3)]
        return f"  {label:<13}" + "".join(f"{x:>10}" for x in [*cells, fmt(total)])

    writes = "enabled" if c["writes_enabled"] else "disabled"
    return [
        "",
        "site" + " " * 13 + "".join(f"{x:>10}" for x in ("L1", "L2", "L3", "total")),
        row("grid A", "grid_current"),
        row("grid W", "grid_power", s["grid_power"]),
        row("voltage V", "voltage"),
        row("net load A", "net_load_current"),
        row("headroom A", "headroom"),
        f"  household {fmt(s['household_consumption'], 'W')} "
        f"(net of PV and battery {fmt(s['net_load_power'], 'W')}), PV {fmt(s['pv_power'], 'W')}, "
        f"battery {fmt(s['battery_power'], 'W')} at {fmt(s['battery_soc'], '%')}, "
        f"EV {fmt(s['ev_power'], 'W')}",
        f"  battery hold: {_hold(s)}",
        f"  breaker {fmt(s['breaker_limit'], 'A')} ({fmt(s['breaker_limit_power'], 'W')}), "
        f"in force: {fmt(s['current_limit'], 'A')}, import {fmt(s['power_limit'], 'W')}",
        f"  overrides: site current {fmt(c['site_current_limit'], 'A')}, "
        f"site power {fmt(c['site_power_limit'], 'W')}, "
        f"next expiry {fmt(c['override_remaining'], 's')}; writes {writes}, "
        f"{c['accepted_writes']} accepted",
    ]


def control_text(ch: dict[str, Any]) -> str:
    """What the reason column says of a charger the gateway does not control ("" if it does).

    An offline charger's last reason would read as if it were live."""
    state = ch["control_state"]
    assumed = fmt(ch["assumed_current"], "A")
    if state == 2:
        return "uncontrolled: its measured draw is fixed load"
    if state == 3:
        return f"offline with a car: counted at {assumed} (its last limit)"
    if state == 4:
        return f"offline with a car: counted at {assumed} (its failsafe)"
    return "offline" if state == 5 or ch["online"] == 0 else ""
_HOLD_STATES = ("no battery control", "released", "held at {limit}", "last write failed")


def _hold(s: dict[str, Any]) -> str:
    state = s["battery_hold"] or 0
    text = _HOLD_STATES[state] if state < len(_HOLD_STATES) else f"state {state}"
    if state == 0:
        return text
    result = s["battery_hold_result"]
    last = {0: "accepted", 0xFFFE: "no answer", 0xFFFF: "none yet"}.get(
        result, f"exception {result}"
    )
    return (
        text.format(limit=fmt(s["battery_hold_limit"], "W"))
        + f"; writes {s['battery_hold_writes']} accepted, {s['battery_hold_failures']} failed,"
        + f" last {last}"
    )


def _charger_lines(chargers: list[dict[str, Any]]) -> list[str]:
    from gateway.model import STATUSES, Mode, Reason

    modes = {m.code: m.value for m in Mode}
    reasons = {r.code: r.text for r in Reason}
    columns = ("#", "id", "online", "status", "ph", "mode", "alloc A", "target A")
    # The charger's own lines, not site phases: its phase_map says where each is wired.
    columns += ("line1 A", "line2 A", "line3 A", "power W", "session Wh", "override", "reason")
    widths = (3, 16, 6, 13, 2, 8, 7, 8, 7, 7, 7, 8, 10, 14, 0)
    lines = [
        "",
        "chargers: none configured"
        if not chargers
        else "chargers (line1-3: each charger's own lines; its phase_map names the site phase)",
    ]
    if not chargers:
        return lines

    def line(cells: tuple[str, ...]) -> str:
        return "  " + " ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    lines.append(line(columns))
    for ch in chargers:
        status = ch["ocpp_status"] or 0
        override = [
            f"max {fmt(ch['max_current_override'])}" if ch["max_current_override"] else "",
            {0: "paused", 1: "enabled"}.get(ch["enable_override"], ""),
            modes.get(ch["mode_override"], ""),
        ]
        lines.append(
            line(
                (
                    str(ch["index"]),
                    ch["charger_id"],
                    {1: "yes", 0: "no"}.get(ch["online"], "-"),
                    STATUSES[status - 1] if 0 < status <= len(STATUSES) else "unknown",
                    fmt(ch["phases"]),
                    modes.get(ch["mode"], "-"),
                    fmt(ch["allocated_current"]),
                    fmt(ch["target_current"]),
                    fmt(ch["current_l1"]),
                    fmt(ch["current_l2"]),
                    fmt(ch["current_l3"]),
                    fmt(ch["power"]),
                    fmt(ch["session_energy"]),
                    " ".join(o for o in override if o) or "-",
                    control_text(ch) or reasons.get(ch["reason"], "-"),
                )
            )
        )
    return lines
