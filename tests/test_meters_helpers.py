"""Shared pieces for the meters tests: known values, configs, waiting on conditions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from gateway.meters.config import Connection, MeterConfig, builtin_meter
from gateway.meters.poller import MeterSet
from gateway.meters.served import ServedBus

# What a three-phase grid meter measures, in its own (import +) convention: exporting on
# L1, importing on L2 and L3; every value representable in every profile's scale.
METER_VALUES = {
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 231.2,
    "voltage_l3_v": 229.3,
    "current_l1_a": -10.0,
    "current_l2_a": 5.5,
    "current_l3_a": 2.25,
    "power_l1_w": -2300.0,
    "power_l2_w": 1265.0,
    "power_l3_w": 516.0,
    "power_w": -519.0,
    "frequency_hz": 50.0,
    "energy_import_wh": 1234500.0,
    "energy_export_wh": 678900.0,
}


def tcp(port: int, transport: str = "tcp") -> Connection:
    return Connection(transport, host="127.0.0.1", port=port)


def meter(
    name: str,
    model: str,
    connection: Connection,
    unit_id: int = 1,
    role: str = "grid",
    **options,
) -> MeterConfig:
    charger = "c1" if role == "charger" else None
    return builtin_meter(name, model, role, connection, unit_id, charger=charger, **options)


@contextlib.asynccontextmanager
async def polling(
    configs: list[MeterConfig], bus: ServedBus, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[MeterSet]:
    """A started MeterSet; on the way out it is stopped and the served bus too."""
    meters = MeterSet(configs, clock=clock)
    await meters.start()
    try:
        yield meters
    finally:
        await meters.stop()
        await bus.stop()


def by_name(meters, name: str):
    return next(m for m in meters.latest() if m.name == name)
