"""The OCPP central system chargers connect to (1.6J and 2.0.1): see docs/ocpp.md."""
