"""Each clause of the allocation contract on a small site where the answer is plain."""

from __future__ import annotations

from gateway.model import Battery, Circuit, Inverter, Reason
from tests.allocation_helpers import BATTERY, amps, charger, run, site


def test_household_is_grid_minus_measured_charger_draw():
    # The charger draws 10 A; the grid shows 19 A: the household is 9 A, 16 A free.
    c = charger("c", max_a=32, draw_a=(10, 10, 10))
    result = run(site(), (19, 19, 19), c)
    assert result.site.household_a == (9, 9, 9)
    assert amps(result) == [16]
    assert result.site.headroom_a == (0, 0, 0)


def test_standard_uses_battery_discharge_above_soc_min_only():
    s = site(breaker=10, phases=1, battery=Battery(max_charge_w=0, max_discharge_w=2300))
    c = charger("c", max_a=32, phases=1, phase_map="A")
    # 10 A breaker, 4 A household: 6 A from the grid + 10 A the battery can still give.
    assert amps(run(s, (4,), c, soc=50, battery_w=0)) == [16]
    assert amps(run(s, (4,), c, soc=10, battery_w=0)) == [6]


def test_battery_charge_counts_as_surplus_at_target_but_its_discharge_never():
    s = site(battery=BATTERY)
    solar = charger("s", "solar", max_a=32)
    # No export; the battery charges 4140 W = 18 A = 6 A per phase.
    assert amps(run(s, (0, 0, 0), solar, soc=79, battery_w=-4140)) == [0]
    assert amps(run(s, (0, 0, 0), solar, soc=80, battery_w=-4140)) == [6]
    # Above target its discharge potential is not the sun's (issue #13: it was).
    assert amps(run(s, (0, 0, 0), solar, soc=90, battery_w=-4140)) == [6]


def test_symmetric_and_asymmetric_inverters_shape_the_surplus():
    one_phase_solar = charger("s", "solar", phases=1, max_a=32)
    export = (-4, -4, -4)
    assert amps(run(site(inverter=Inverter(asymmetric=False)), export, one_phase_solar)) == [0]
    assert amps(run(site(inverter=Inverter(asymmetric=True)), export, one_phase_solar)) == [12]
    # The asymmetric pool is limited per phase by the inverter's per-phase maximum.
    capped = site(inverter=Inverter(asymmetric=True, max_phase_w=230 * 7))
    assert amps(run(capped, export, one_phase_solar)) == [7]


def test_import_cap_limits_the_grid_total():
    s = site(max_import_w=230 * 30)  # 30 A summed over the phases
    result = run(s, (2, 2, 2), charger("c", max_a=32))
    assert amps(result) == [8]  # (30 - 6) / 3


def test_no_grid_charging_leaves_only_the_sun():
    s = site(allow_grid_charging=False)
    assert amps(run(s, (5, 5, 5), charger("c"))) == [0]
    assert amps(run(s, (-7, -7, -7), charger("c"))) == [7]


def test_circuit_refusal_stays_available_to_chargers_outside_it():
    s = site(breaker=32, circuits=(Circuit("garage", 10, ("g",)),))
    result = run(s, (0, 0, 0), charger("g", priority=1), charger("out", priority=2, max_a=32))
    assert amps(result) == [10, 22]
    assert result.by_id["g"].reason is Reason.CIRCUIT_LIMIT


def test_circuit_members_share_its_limit():
    s = site(breaker=63, circuits=(Circuit("garage", 24, ("a", "b")),), distribution="shared")
    assert amps(run(s, (0, 0, 0), charger("a"), charger("b"))) == [12, 12]


def test_one_phase_car_on_three_phase_charger_frees_the_other_phases():
    s = site(breaker=20)
    car_on_l1 = charger("one", priority=1, draw_a=(10, 0, 0))
    other = charger("other", priority=2, phases=1, phase_map="BCA")
    result = run(s, (10, 4, 4), car_on_l1, other)
    assert result.by_id["one"].phases == 1
    # Household is 0/4/4: "one" may take A only, "other" gets 16 on B.
    assert amps(result) == [16, 16]


def test_three_phase_charger_on_one_phase_site_uses_its_one_line():
    s = site(phases=1, breaker=32)
    result = run(s, (10,), charger("c", phases=3, phase_map="A", max_a=32))
    assert amps(result) == [22]
    assert result.by_id["c"].phases == 1


def test_inactive_statuses_get_nothing_but_see_what_they_would_get():
    s = site()
    busy = charger("busy", priority=1, max_a=16)
    for status in ("Available", "Unavailable", "Faulted", "Finishing"):
        idle = charger("idle", priority=2, status=status)
        result = run(s, (0, 0, 0), busy, idle)
        assert amps(result) == [16, 0]
        assert result.by_id["idle"].available_a == 9
        assert result.by_id["idle"].reason is Reason.NOT_ACTIVE
    for status in ("Preparing", "Charging", "SuspendedEVSE", "SuspendedEV"):
        assert amps(run(s, (0, 0, 0), busy, charger("x", priority=2, status=status))) == [16, 9]


def test_excess_gets_its_minimum_once_over_the_threshold():
    s = site(excess_threshold_w=13000)
    x = charger("x", "excess")
    # 20 A export per phase = 13800 W: 800 W over (1.2 A per phase), minimum guaranteed.
    assert amps(run(s, (-20, -20, -20), x)) == [6]
    assert amps(run(s, (-18, -18, -18), x)) == [0]
    assert run(s, (-18, -18, -18), x).by_id["x"].reason is Reason.NO_EXCESS


def test_allocations_round_down_to_tenths_and_target_reports_the_mode_alone():
    result = run(site(), (-9.37, -9.37, -9.37), charger("s", "solar"))
    assert amps(result) == [9.3]
    assert result.by_id["s"].target_a == 9.3
    # Standard wants its maximum whatever the breaker allows.
    limited = run(site(breaker=20), (9, 9, 9), charger("c"))
    assert (limited.by_id["c"].allocated_a, limited.by_id["c"].target_a) == (11, 16)
    assert limited.by_id["c"].reason is Reason.BREAKER_LIMIT


def test_standard_gets_nothing_when_the_breaker_cannot_carry_the_minimum():
    result = run(site(), (20, 20, 20), charger("c"))
    assert amps(result) == [0]
    assert result.by_id["c"].reason is Reason.NO_CAPACITY


def test_draw_reported_on_an_unwired_line_is_not_taken_as_export():
    # A 1-phase charger cannot draw on L3: such a reading must not free capacity anywhere.
    s = site(breaker=0, allow_grid_charging=False)
    odd = charger("odd", phases=1, min_a=6, max_a=6, draw_a=(0, 0, 6))
    result = run(s, (0, 0, 0), odd)
    assert result.site.household_a == (0, 0, 0)
    assert amps(result) == [0]


def test_a_charger_without_minimum_is_still_served():
    for distribution in ("shared", "priority", "strict", "optimized"):
        result = run(site(distribution=distribution), (9, 9, 9), charger("c", min_a=0))
        assert amps(result) == [16], distribution


def test_shared_keeps_filling_after_one_charger_is_already_full():
    # "fixed" can take only its minimum: the others must still share the rest evenly.
    s = site(breaker=25, distribution="shared")
    result = run(
        s,
        (0, 0, 0),
        charger("fixed", min_a=6, max_a=6, priority=1),
        charger("b", priority=2),
        charger("c", priority=3),
    )
    assert amps(result) == [6, 9.5, 9.5]


def test_a_solar_charger_whose_surplus_went_to_a_standard_one_says_so():
    result = run(site(), (-10, -10, -10), charger("std", priority=2), charger("sol", "solar"))
    assert amps(result) == [16, 0]
    assert result.by_id["sol"].reason is Reason.NO_SURPLUS


def test_the_inverter_limit_counts_its_whole_output_pv_and_battery():
    """A 10 kW inverter already putting out 8 kW of PV can add 2 kW, not the battery's 5."""
    from gateway.allocation.pools import battery_view
    from gateway.model import Site

    s = Site(
        main_breaker_a=25,
        battery=Battery(max_charge_w=5000, max_discharge_w=5000),
        inverter=Inverter(max_w=10000),
    )
    view = battery_view(s, soc=90, power_w=0, volts=230, pv_w=8000)
    assert abs(view.discharge_room_a - 2000 / 230) < 1e-9
    assert abs(battery_view(s, 90, 0, 230).discharge_room_a - 5000 / 230) < 1e-9
