"""The per-charger control rules (gateway/ocpp/machine.py), one plain test per rule.

The machine is pure: every time here is a number passed in (monotonic seconds), the wall
clock only the `wall` given to `layer()`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from gateway.ocpp.config import ChargerOcpp, OcppConfig
from gateway.ocpp.machine import (
    BACKOFF_MAX_S,
    DISOBEYS,
    REFUSES,
    START_READING_S,
    Machine,
    Seen,
    Send,
    Target,
)
from gateway.ocpp.profiles import BASE_STACK

CFG = OcppConfig(refresh_s=30, validity_s=120, obey_grace_s=20, obey_strikes=3)
WALL = 1_800_000_000.0  # epoch seconds at mono 0


def machine(**ocpp: object) -> Machine:
    target = Target("CP1", failsafe_a=6.0, phases=3, voltage_v=230.0, ocpp=ChargerOcpp(**ocpp))
    m = Machine(target, CFG)
    m.choose(frozenset({"A", "W"}), 8, True)
    m.set_up(-100.0)
    return m


def wish(amps: float, at: float, **kw: object) -> Seen:
    return Seen(wanted_a=amps, wanted_at=at, **kw)  # type: ignore[arg-type]


def accept(m: Machine, now: float, seen: Seen) -> Send:
    send = m.due(now, seen)
    assert send is not None, f"nothing due at {now}"
    assert m.result(send, "Accepted", now) is False
    return send


def test_a_wish_is_sent_on_change_and_refreshed() -> None:
    m = machine()
    send = accept(m, 0.0, wish(10, 0.0))
    assert (send.amps, send.limit) == (10, 10.0)
    assert m.due(1.0, wish(10, 1.0)) is None  # unchanged, refresh not due
    assert m.due(2.0, wish(8, 2.0)) is not None  # changed: at once
    assert m.due(30.0, wish(10, 30.0)) is not None  # refresh due
    assert m.applied_a == 10 and m.applied_until == 120.0
    assert m.next_due(10.0) == pytest.approx(20.0)


def test_nothing_is_sent_before_the_state_is_known_or_after_the_hub_went_quiet() -> None:
    m = machine()
    assert m.due(0.0, wish(0, 0.0, state_known=False)) is None  # never 0 A on ignorance
    accept(m, 0.0, wish(10, 0.0))
    assert m.due(119.0, wish(10, 0.0)) is not None  # a wish within the validity
    assert m.due(121.0, wish(10, 0.0)) is None  # hub quiet for > validity_s: let it lapse
    assert m.expected_a(121.0) == 6.0  # the layer lapsed: the failsafe is in force


def test_a_lost_send_is_not_sent_and_is_tried_again_at_the_next_wake() -> None:
    m = machine()
    accept(m, 0.0, wish(16, 0.0))
    send = m.due(1.0, wish(6, 1.0))
    assert send is not None
    assert m.result(send, None, 1.0) is False  # timeout
    assert m.applied_a == 16 and m.applied_until == 120.0  # what the charger holds
    assert "no reply" in m.problem
    assert m.due(2.0, wish(6, 2.0)) is not None  # the next cycle, not the refresh
    assert m.result(send, "InternalError", 2.0, "busy") is False  # not a refusal either
    assert m.uncontrolled is None
    # One line per streak of failures, not one per cycle.
    assert [t for _, t in m.take_notes() if "failed" in t] == ["limit failed: no reply"]
    accept(m, 3.0, wish(6, 3.0))
    assert m.applied_a == 6 and m.problem == ""


def test_refusals_walk_the_fallback_chain_then_the_charger_is_uncontrolled() -> None:
    m = machine()
    seen = wish(10, 0.0)
    send = m.due(0.0, seen)
    assert send is not None and m.stack == 8
    assert m.result(send, "Rejected", 0.0) is True  # drop the stack level: reinstall, retry
    assert m.stack == 1 and m.unit == "A"
    send = m.due(0.0, seen)
    assert send is not None
    assert m.result(send, "NotImplemented", 0.0, "no") is True  # drop amps
    assert m.unit == "W" and m.base.unit == "W" and m.base.limit == 6 * 230 * 3
    send = m.due(0.0, seen)
    assert send is not None and send.limit == 10 * 230 * 3
    assert m.result(send, "NotSupported", 0.0) is False
    assert m.uncontrolled == REFUSES and "uncontrolled" in m.problem
    uncontrolled = [t for level, t in m.take_notes() if "uncontrolled" in t]
    assert len(uncontrolled) == 1
    # Backed off: not every refresh, but after 2 x refresh_s, then doubling.
    assert m.due(59.0, wish(10, 59.0)) is None
    send = m.due(60.0, wish(10, 60.0))
    assert send is not None
    assert m.result(send, "Rejected", 60.0) is False
    assert m.due(179.0, wish(10, 179.0)) is None and m.due(180.0, wish(10, 180.0)) is not None
    assert not [t for _, t in m.take_notes() if "uncontrolled" in t]  # said once
    for _ in range(10):
        m.result(send, "Rejected", 0.0)
    assert m.backoff_s == BACKOFF_MAX_S
    # It takes a limit: controlled again, back to the refresh rhythm.
    send = m.due(1000.0, wish(10, 1000.0))
    assert send is not None and m.result(send, "Accepted", 1000.0) is False
    assert m.uncontrolled is None and m.problem == ""
    assert m.due(1001.0, wish(10, 1001.0)) is None
    assert m.due(1030.0, wish(10, 1030.0)) is not None


def test_a_configured_stack_and_unit_leave_no_fallback() -> None:
    m = machine(stack_level=0, rate_unit="A")
    assert m.stack == BASE_STACK
    send = m.due(0.0, wish(10, 0.0))
    assert send is not None
    assert m.result(send, "Rejected", 0.0) is False
    assert m.uncontrolled == REFUSES


def test_watts_count_the_active_phases_and_the_failsafe_the_chargers() -> None:
    m = machine(rate_unit="W")
    assert m.base.limit == 6 * 230 * 3  # a 3-phase car gets 6 A per line, not 2 A
    send = accept(m, 0.0, wish(10, 0.0, active_phases=1, voltage_v=231.0))
    assert send.limit == 10 * 231
    assert m.due(1.0, wish(10, 1.0, active_phases=3)) is not None  # same A, other W


def test_relative_profiles_count_from_the_session_start() -> None:
    m = machine(profile_kind="relative")
    send = accept(m, 0.0, wish(10, 0.0, session_age_s=1200.0))
    layer = m.layer(send, WALL)
    assert layer.tail == (1200 + 120, 6.0)


def test_obedience_strikes_resend_reinstall_then_uncontrolled_and_recovery() -> None:
    m = machine()
    accept(m, 0.0, wish(8, 0.0))
    t = 0.0

    def reading(amps: float) -> bool:
        nonlocal t
        t += 10.0
        return m.observe(t, Seen(reading_at=t, car=True, measured_a=amps))

    assert not reading(16)  # t=10: within the grace after the change
    assert not reading(16) and not reading(16)  # strikes 1, 2
    assert reading(16)  # strike 3: re-send
    assert m.sent_key is None and not m.obeys and DISOBEYS in m.problem
    assert not reading(16)  # inside the new grace
    assert not reading(16) and not reading(16)  # strikes 4, 5
    assert not m.reinstall
    assert reading(16)  # strike 6: clear and reinstall
    assert m.reinstall and m.uncontrolled is None
    m.set_up(t)  # the control task cleared and reinstalled
    for _ in range(20):
        reading(16)
    assert m.uncontrolled == DISOBEYS
    assert not reading(7.5)  # the layer lapsed: agrees with the failsafe + tolerance
    assert m.obeys and m.uncontrolled is None and m.problem == ""
    notes = [text for _, text in m.take_notes()]
    assert sum("does not obey" in n for n in notes) == 1
    assert sum("uncontrolled" in n for n in notes) == 1


def test_no_car_no_check_and_one_reading_counts_once() -> None:
    m = machine()
    accept(m, 0.0, wish(8, 0.0))
    for t in (100.0, 110.0, 120.0, 130.0):
        m.observe(t, Seen(reading_at=t, car=False, measured_a=32))  # idle: offers its max
    for _ in range(5):
        m.observe(140.0, Seen(reading_at=140.0, car=True, measured_a=32))
    assert m.obeys and m.strikes == 1


def test_a_charging_start_asks_for_meter_values_once_the_car_followed() -> None:
    m = machine()
    accept(m, 0.0, wish(10, 0.0))
    m.started_charging(0.0, Seen())
    assert m.readings_due(100.0) == []
    m.started_charging(10.0, Seen(charging_on=frozenset({1})))
    assert m.next_due(10.0) == pytest.approx(START_READING_S)
    assert m.readings_due(10.0 + START_READING_S - 0.1) == []
    assert m.readings_due(10.0 + START_READING_S) == [1]
    assert m.readings_due(20.0) == []  # once
    m.started_charging(20.0, Seen(charging_on=frozenset({1})))
    assert m.readings_due(30.0) == []  # still the same session
    # Stopping and starting again before the reading does not put it off.
    m.started_charging(21.0, Seen())
    m.started_charging(22.0, Seen(charging_on=frozenset({1})))
    m.started_charging(23.0, Seen())
    m.started_charging(24.0, Seen(charging_on=frozenset({1})))
    assert m.readings_due(22.0 + START_READING_S) == [1]
    # A second car on connector 2 while the first charges: its own reading.
    m.started_charging(30.0, Seen(charging_on=frozenset({1, 2})))
    assert m.readings_due(30.0 + START_READING_S) == [2]
    m.connected()  # a reconnect: a session found charging counts as a start
    m.started_charging(40.0, Seen(charging_on=frozenset({1, 2})))
    assert m.readings_due(40.0 + START_READING_S) == [1, 2]


def test_a_backward_wall_clock_step_changes_no_timing() -> None:
    """NTP steps a Pi's clock back an hour: re-sends go on every refresh_s, and the layer
    the charger holds never lapses; only the profile's timestamps follow the wall clock."""
    m = machine()
    sends: list[float] = []
    for second in range(601):
        now = float(second)
        wall = WALL + now - (3600.0 if second >= 100 else 0.0)
        seen = wish(10, now)
        if (send := m.due(now, seen)) is not None:
            layer = m.layer(send, wall)
            assert layer.valid_to == wall + CFG.validity_s
            assert m.result(send, "Accepted", now) is False
            sends.append(now)
        assert m.applied_until > now  # never lapses
    assert sends == [float(s) for s in range(0, 601, 30)]


def test_choose_takes_the_config_over_the_charger_and_notes_it() -> None:
    m = machine()
    m.take_notes()
    m.choose(frozenset({"W"}), None, False)
    assert (m.unit, m.stack) == ("W", 1)
    assert m.take_notes() == [
        (logging.INFO, "limits in W, dynamic stack level 1 (no SmartCharging?)")
    ]
    fixed = Machine(replace(m.target, ocpp=ChargerOcpp(rate_unit="A", stack_level=2)), CFG)
    fixed.choose(frozenset({"W"}), 8, True)
    assert (fixed.unit, fixed.stack) == ("A", 2)


def test_two_connectors_share_the_chargers_limit() -> None:
    """Each connector's layer limits it alone: every connector gets one (a car on any is
    controlled), the cars share the charger's limit, and so does the failsafe."""
    m = machine()
    m.choose(frozenset({"A"}), 8, True, connectors=2)
    assert m.profile_connectors() == (1, 2)
    assert m.base.limit == 3.0
    one = accept(m, 0.0, wish(16, 0.0, cars=1))
    assert one.limit == 16.0
    two = m.due(1.0, wish(16, 1.0, cars=2))  # a second car: at once, not at the refresh
    assert two is not None and two.limit == 8.0
    wide = machine(connector=0)
    wide.choose(frozenset({"A"}), 8, True, connectors=2)
    assert wide.profile_connectors() == (0,)
    assert wide.due(0.0, wish(16, 0.0, cars=2)).limit == 8.0  # type: ignore[union-attr]
