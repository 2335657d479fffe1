"""A simulated site: physics of households, PV, batteries and cars, plus protocol stand-ins."""
