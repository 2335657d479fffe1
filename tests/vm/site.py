"""The demo's simulated site inside the VM: its meters on the ports of the demo config and
its chargers connecting to the installed service (OCPP on 127.0.0.1:19000).

Prints "site: chargers connected" once all are, then every second the currents the cars
really draw ("site: cars A ..."), which tests/vm/guest.sh reads to see allocation work.
"""

from __future__ import annotations

import asyncio

from gateway.sim.demo_command import demo_site


async def main() -> None:
    live = demo_site(speed=30.0)
    by_role = {m.role: m.connection.port for m in live.config.meters}
    await live.start_meters(by_role["grid"], by_role["pv"])
    live.start_ticking()
    print("site: meters serving", flush=True)
    await live.connect_chargers(live.config.ocpp.port)
    print("site: chargers connected", flush=True)
    while True:
        print("site: cars A " + " ".join(f"{a:.1f}" for a in live.ev_currents()), flush=True)
        await asyncio.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main())
