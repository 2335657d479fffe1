"""Pure allocation: no I/O, no asyncio, no clock. Time enters as an argument."""
