"""Polling meters, inverters and batteries over Modbus RTU, TCP and RTU-over-TCP.

Kept import-light (no pymodbus here) because `gateway.config` reads the `[[meters]]`
section through `gateway.meters.config`. The running side is `gateway.meters.poller.MeterSet`.
"""
