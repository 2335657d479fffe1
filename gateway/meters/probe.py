"""`evse-gateway probe`: which known devices answer on this port or host, and what they read.

For an installer checking the wiring before writing the config: every profile is tried on
every unit id, values are checked for plausibility (a float meter read as an integer one
gives absurd voltages), and a unit that does not answer is given up after one timeout.
Related profiles often all fit one device (an SDM630 also answers the SDM120's
registers), so the plausible answers are ranked by how complete their decode is, the
best one recommended with a ready `[[meters]]` block. Misfits only with `-v`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys

from gateway.meters.config import PARITIES, TRANSPORTS, Connection, MeterConfig, builtin_meter

# Plausible ranges; a value outside says the profile does not fit this device.
_RANGES = {"voltage": (0.0, 300.0), "frequency": (45.0, 65.0), "soc": (0.0, 100.0)}
_LIMITS = {"power": 1e6, "current": 1000.0, "energy": 1e12}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="Modbus TCP host (else --port is a serial port)")
    parser.add_argument(
        "--port", help="serial port, e.g. /dev/ttyUSB0; with --host the TCP port (502)"
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="tcp", help="with --host")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", choices=PARITIES, default="N")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument(
        "--unit",
        type=int,
        action="append",
        help="unit id to try (repeatable); default: each profile's usual id",
    )
    parser.add_argument("--model", action="append", help="only these profiles (repeatable)")
    parser.add_argument("--timeout", type=float, default=0.3, help="seconds per request")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show the profiles that do not fit"
    )


def plausible(values: dict[str, float]) -> bool:
    if not values:
        return False
    for name, value in values.items():
        kind = name.split("_", 1)[0]
        if kind in _RANGES:
            lo, hi = _RANGES[kind]
            if not lo <= value <= hi:
                return False
        elif abs(value) > _LIMITS.get(kind, float("inf")):
            return False
    return True


def _connection(args: argparse.Namespace) -> Connection:
    if args.host:
        if args.port and not args.port.isdigit():
            raise ValueError(f"--port with --host is a TCP port number, not {args.port!r}")
        return Connection(args.transport, host=args.host, port=int(args.port or 502))
    if not args.port:
        raise ValueError("give --port /dev/ttyUSB0 or --host HOST")
    return Connection(
        "rtu", device=args.port, baud=args.baud, parity=args.parity, stopbits=args.stopbits
    )


def _candidates(args: argparse.Namespace, connection: Connection) -> list[MeterConfig]:
    from gateway.meters.profile import builtin, builtin_names

    names = args.model or builtin_names()
    unknown = sorted(set(names) - set(builtin_names()))
    if unknown:
        known = ", ".join(builtin_names())
        raise ValueError(f"unknown model {', '.join(unknown)} (known: {known})")
    out = []
    for name in names:
        profile = builtin(name)
        units = args.unit or [profile.unit_id]
        roles = profile.roles() if profile.is_sunspec else tuple(profile.parts)
        for unit in units:
            for role in roles:
                role = "grid" if role == "meter" else role
                if role == "charger":
                    continue
                out.append(
                    builtin_meter(
                        f"{name}/{role}",
                        name,
                        role,
                        connection,
                        unit,
                        timeout_s=args.timeout,
                        retries=0,
                    )
                )
    return out


# name suffix -> (unit shown, divisor, decimals): what an installer reads off the display
_UNITS = {
    "v": ("V", 1, 1),
    "a": ("A", 1, 2),
    "w": ("W", 1, 0),
    "wh": ("kWh", 1000, 2),
    "hz": ("Hz", 1, 2),
    "pct": ("%", 1, 1),
}


def human(name: str, value: float) -> str:
    """`energy_import_wh` 12345600 -> "energy_import 12345.60 kWh"."""
    stem, _, suffix = name.rpartition("_")
    if stem and suffix in _UNITS:
        unit, divisor, decimals = _UNITS[suffix]
        return f"{stem} {value / divisor:.{decimals}f} {unit}"
    return f"{name} {value:g}"


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(human(k, v) for k, v in sorted(values.items()))


def why_not_open(connection: Connection) -> str:
    """The reason a port or host could not be opened, in the installer's terms."""
    if connection.transport == "rtu":
        device = connection.device
        if not os.path.exists(device):
            return f"{device} does not exist (adapter not plugged in? ls /dev/serial/by-id/)"
        if not os.access(device, os.R_OK | os.W_OK):
            return f"no permission on {device} (run as a user in the dialout group)"
        return f"{device} exists but did not open (in use by another program, e.g. the service?)"
    try:
        with socket.create_connection((connection.host, connection.port), timeout=2.0):
            return f"{connection.host}:{connection.port} accepted, then failed"
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0) or str(exc)
        return f"{connection.host}:{connection.port}: {reason}"


def meters_block(cfg: MeterConfig, connection: Connection) -> list[str]:
    """A `[[meters]]` entry for the config, as probed."""
    if connection.transport == "rtu":
        where = [f'port = "{connection.device}"', f"baud = {connection.baud}"]
        if connection.parity != "N":
            where.append(f'parity = "{connection.parity}"')
        if connection.stopbits != 1:
            where.append(f"stopbits = {connection.stopbits}")
    else:
        where = [f'host = "{connection.host}"', f"port = {connection.port}"]
        if connection.transport != "tcp":
            where.append(f'transport = "{connection.transport}"')
    return [
        "[[meters]]",
        f'name = "{cfg.role}"',
        f'model = "{cfg.model}"',
        f'role = "{cfg.role}"',
        *where,
        f"unit_id = {cfg.unit_id}",
    ]


async def probe(args: argparse.Namespace, out=sys.stdout) -> int:
    from gateway.meters.bus import Bus, Device

    try:
        connection = _connection(args)
        candidates = _candidates(args, connection)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    devices = [Device(c, lambda: 0.0) for c in candidates]
    bus = Bus(connection, devices)
    print(f"probing {connection.describe()}", file=out)
    found: list[tuple[int, bool, MeterConfig]] = []
    try:
        if not await bus.link.connect(2.0):
            print(f"cannot open {connection.describe()}: {why_not_open(connection)}", file=out)
            return 1
        silent: set[int] = set()
        for device in devices:
            cfg = device.config
            if cfg.unit_id in silent:
                continue
            await bus.poll(device)
            if device.timed_out:
                silent.add(cfg.unit_id)
                print(f"unit {cfg.unit_id}: no answer within {cfg.timeout_s:g} s", file=out)
                continue
            values = {k: r.value for k, r in device.values.items()}
            where = f"unit {cfg.unit_id}: {cfg.model} as {cfg.role}"
            if plausible(values):
                found.append((len(values), device.ok, cfg))
                note = "" if device.ok else f" (partly: {device.error})"
                print(f"{where}: answers{note}\n    {_fmt(values)}", file=out)
            elif not args.verbose:
                continue
            elif values:
                print(f"{where}: answers, values do not fit\n    {_fmt(values)}", file=out)
            else:
                print(f"{where}: {device.error}", file=out)
    finally:
        bus.link.close()
    if not found:
        print("nothing plausible answered (-v shows what did not fit)", file=out)
        return 1
    # The most complete decode first; a complete read beats one with failed registers.
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    count, _, best = found[0]
    others = ", ".join(f"{c.model}" for _, _, c in found[1:])
    print(
        f"\nrecommended: {best.model} as {best.role} on unit {best.unit_id} "
        f"({count} plausible values" + (f"; also fit, with fewer: {others})" if others else ")"),
        file=out,
    )
    print("\n".join(meters_block(best, connection)), file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    # The probe prints its own findings; per-request warnings would bury them.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("gateway.meters").setLevel(logging.ERROR)
    return asyncio.run(probe(args))
