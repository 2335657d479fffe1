"""The named firmware behaviours a simulated charge point can show.

A module of its own, free of the OCPP libraries, so that reading a scenario (and
building the command line) does not import them.
"""

# Named behaviours of real charge point stacks (shared/reference/firmware-observed.md) that
# a simulated charger can show; tests, `demo` and `simulate` select them by name.
QUIRKS = frozenset(
    {
        "ignores_limits",  # charges at its max whatever the profiles say
        "ignores_valid_to",  # MicroOcpp 1.2.0: a profile's validTo never ends it
        "no_boot_on_reconnect",  # a plain reconnect sends neither Boot nor StatusNotification
        "integer_currents",  # Current.Import as a whole number ("15.00" at 15.9 A)
        "l1_only_currents",  # MeterValues carry only an L1 current
        "line_to_line_voltage",  # Voltage samples about 400 V
        "reply_extras",  # vendor fields in replies
        "set_profile_not_implemented",  # SetChargingProfile -> CallError NotImplemented
        # refuses measurand lists with Current.Offered; 2.0.1 then sends no meter values
        "rejects_measurands",
        "two_connectors",  # NumberOfConnectors = 2 (MicroOcpp); plug_in(connector=2)
        "watts_only",  # smart charging in W only
        "no_stack_level_key",  # reports no ChargeProfileMaxStackLevel / rate unit
        "absurd_current",  # reports Current.Import 1000 A
        "ignores_phase_switch",  # says it switches phases, keeps all three whatever it is told
        "no_phase_switch",  # ConnectorSwitch3to1PhaseSupported / Phases3to1 = false
    }
)
