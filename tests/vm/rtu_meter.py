"""The RS485 meter of the VM (tests/vm/vm.sh): an SDM630 served over Modbus RTU on the pty
behind the guest's second serial port (/dev/ttyS1 there), as a USB-RS485 adapter and a
meter would be on a Pi. Runs on the host, so the guest's service reads it through its own
serial driver, DeviceAllow and the dialout group.

Its voltages (SERVED) are what tests/vm/guest.sh looks for in `evse-gateway status`; it
prints the number of requests it answered when stopped (SIGTERM).

Usage: python tests/vm/rtu_meter.py /dev/pts/N
"""

from __future__ import annotations

import asyncio
import signal
import sys

from gateway.meters.profile import builtin
from gateway.meters.served import ServedBus, Unit, image

# Not the demo site's voltages, so a match can only come over the serial line.
SERVED = {
    "voltage_l1_v": 241.0,
    "voltage_l2_v": 242.0,
    "voltage_l3_v": 243.0,
    "current_l1_a": 3.0,
    "current_l2_a": 4.0,
    "current_l3_a": 5.0,
    "power_l1_w": 723.0,
    "power_l2_w": 968.0,
    "power_l3_w": 1215.0,
    "power_w": 2906.0,
    "frequency_hz": 50.0,
    "energy_import_wh": 1000000.0,
    "energy_export_wh": 0.0,
}


async def main(path: str) -> None:
    registers = builtin("sdm630").parts["meter"].registers
    bus = ServedBus([Unit(1, image(registers, SERVED))])
    await bus.start_serial(path, baud=9600)
    print(f"rtu_meter: SDM630 unit 1 at 9600 8N1 on {path}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(f"rtu_meter: answered {bus.request_count()} requests", flush=True)
    await bus.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
