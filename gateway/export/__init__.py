"""Modbus TCP export: the register map (`registers.csv`), the image and the server.

The hub builds an `ExportState` each cycle, calls `ExportServer.publish(state)` and reads
`ExportServer.overrides()` for setpoints written by SCADA or an inverter.
"""
