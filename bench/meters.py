"""Transactions and wall time per polling cycle: grid meter + inverter + battery.

One SDM630 grid meter (unit 1) and a Deye hybrid read as PV and battery (unit 2), on one
Modbus TCP endpoint and on one RTU bus (a pty pair: framing only, no baud delay), against
the naive one-request-per-value count. Beside it, the RS485 wire-time floor of the same
reads at 9600 8N1 (frames + 3.5-char gaps, no meter turnaround). Run: python bench/meters.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.meters.blocks import char_time_s, plan_blocks, wire_time_s
from gateway.meters.bus import Bus, Device, max_gap
from gateway.meters.config import Connection, MeterConfig, builtin_meter
from gateway.meters.profile import builtin
from gateway.meters.served import PtyLine, ServedBus, Unit, image

CYCLES = 50
SITE = [("grid", "sdm630", 1, "grid"), ("pv", "deye", 2, "pv"), ("battery", "deye", 2, "battery")]
VALUES = {
    "voltage_l1_v": 230.0,
    "current_l1_a": 5.0,
    "power_l1_w": 1150.0,
    "power_w": 1000.0,
    "soc_pct": 50,
    "_pv1_w": 1000,
}


def configs(connection: Connection) -> list[MeterConfig]:
    return [builtin_meter(n, model, role, connection, unit) for n, model, unit, role in SITE]


def served() -> ServedBus:
    units: dict[int, dict[int, int]] = {}
    for _, model, unit, role in SITE:
        parts = builtin(model).parts
        part = parts.get(role) or parts["meter"]
        words = units.setdefault(unit, {})
        words.update(image(part.registers, VALUES))
        for r in part.registers:  # every planned register readable, as on the real device
            words.update({a: words.get(a, 0) for a in range(r.address, r.address + r.size)})
    for words in units.values():
        lo, hi = min(words), max(words)
        words.update({a: words.get(a, 0) for a in range(lo, hi + 1)})
    return ServedBus(Unit(u, w) for u, w in units.items())


async def measure(connection: Connection) -> tuple[float, float, int]:
    devices = [Device(c, time.monotonic) for c in configs(connection)]
    bus = Bus(connection, devices)
    assert await bus.ensure_connected()
    times = []
    before = bus.link.requests
    for _ in range(CYCLES):
        start = time.perf_counter()
        for d in devices:
            await bus.poll(d)
            assert d.ok, d.error
        times.append(time.perf_counter() - start)
    bus.link.close()
    per_cycle = (bus.link.requests - before) / CYCLES
    return statistics.median(times) * 1000, max(times) * 1000, int(per_cycle)


async def main() -> None:
    rows = []
    server = served()
    port = await server.start_tcp()
    rows.append(("TCP", *await measure(Connection("tcp", host="127.0.0.1", port=port))))
    await server.stop()

    line = PtyLine()
    line.start()
    server = served()
    await server.start_serial(line.server_path, baud=9600)
    rows.append(("RTU pty", *await measure(Connection("rtu", device=line.client_path))))
    await server.stop()
    line.close()

    rtu = Connection("rtu", device="-", baud=9600)
    char = char_time_s(9600, "N", 1)
    merged, naive, values = [], [], 0
    for c in configs(rtu):
        parts = c.profile.parts
        part = parts.get(c.role) or parts["meter"]
        merged += plan_blocks(part.registers, c.max_registers, max_gap(rtu))
        naive += [b for r in part.registers for b in plan_blocks([r], 125, 0)]
        values += len(part.registers)

    print(f"site: {', '.join(f'{n}={m}' for n, m, _, _ in SITE)}; {values} values; {CYCLES} cycles")
    print(f"{'link':<10}{'requests/cycle':>16}{'naive':>8}{'median ms':>12}{'max ms':>9}")
    for link, median, worst, requests in rows:
        print(f"{link:<10}{requests:>16}{values:>8}{median:>12.2f}{worst:>9.2f}")
    print(
        f"9600 8N1 wire floor per cycle: merged {len(merged)} requests "
        f"{wire_time_s(merged, char) * 1000:.0f} ms, naive {len(naive)} requests "
        f"{wire_time_s(naive, char) * 1000:.0f} ms (+ 10-30 ms meter turnaround per request)"
    )


if __name__ == "__main__":
    asyncio.run(main())
