"""Safety and fairness properties over random sites and charger sets (hypothesis).

Bounds are computed here from the inputs directly, not from the allocator's pools.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.allocation.allocator import allocate
from gateway.model import (
    ACTIVE_STATUSES,
    PHASE_NAMES,
    STATUSES,
    Battery,
    Charger,
    Circuit,
    Distribution,
    Inverter,
    Measurements,
    Mode,
    Site,
    Snapshot,
)

TOL = 1e-6
PERMUTATIONS = ["ABC", "BCA", "CAB", "ACB", "BAC", "CBA"]


@st.composite
def snapshots(draw, with_battery: bool | None = None, distinct_priorities: bool = False):
    phases = draw(st.sampled_from([1, 3]))
    n = draw(st.integers(0, 7))
    ids = [f"c{i}" for i in range(n)]
    priorities = (
        draw(st.permutations(range(1, n + 1)))
        if distinct_priorities
        else [draw(st.integers(1, 3)) for _ in ids]
    )
    chargers = []
    for cid, priority in zip(ids, priorities, strict=True):
        min_a = draw(st.sampled_from([0.0, 6.0, 6.0, 8.0, 10.0]))
        cphases = draw(st.integers(1, 3))
        chargers.append(
            Charger(
                id=cid,
                mode=draw(st.sampled_from(list(Mode))),
                min_a=min_a,
                max_a=draw(st.floats(min_a, 32).map(lambda v: round(v, 1))),
                phases=cphases,
                priority=priority,
                phase_map=draw(st.sampled_from(PERMUTATIONS)) if phases == 3 else "A",
                status=draw(st.sampled_from(STATUSES)),
                draw_a=tuple(draw(st.sampled_from([0.0, 0.5, 6.0, 10.0, 16.0])) for _ in range(3)),
                idle_s=draw(st.sampled_from([0.0, 120.0])),
            )
        )
    battery = None
    if with_battery is None:
        with_battery = draw(st.booleans())
    if with_battery:
        soc_min = draw(st.floats(5, 50))
        battery = Battery(
            max_charge_w=draw(st.floats(0, 8000)),
            max_discharge_w=draw(st.floats(0, 8000)),
            soc_min=soc_min,
            soc_target=draw(st.floats(soc_min, 100)),
        )
    inverter = draw(
        st.one_of(
            st.none(),
            st.builds(
                Inverter,
                max_w=st.one_of(st.none(), st.floats(1000, 15000)),
                max_phase_w=st.one_of(st.none(), st.floats(500, 6000)),
                asymmetric=st.booleans(),
            ),
        )
    )
    circuits = []
    for k in range(draw(st.integers(0, 2)) if ids else 0):
        members = draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
        circuits.append(Circuit(f"g{k}", draw(st.floats(0, 32)), tuple(members)))
    site = Site(
        main_breaker_a=draw(st.floats(0, 63)),
        phases=phases,
        max_import_w=draw(st.one_of(st.none(), st.floats(0, 30000))),
        distribution=draw(st.sampled_from(list(Distribution))),
        excess_threshold_w=draw(st.floats(0, 15000)),
        allow_grid_charging=draw(st.booleans()),
        battery=battery,
        inverter=inverter,
        circuits=tuple(circuits),
    )
    measurements = Measurements(
        grid_current_a=tuple(draw(st.floats(-40, 60)) for _ in range(phases)),
        pv_power_w=draw(st.floats(0, 15000)),
        battery_soc=draw(st.floats(0, 100)) if battery else None,
        battery_power_w=draw(st.floats(-6000, 6000)) if battery else None,
    )
    return Snapshot(site=site, measurements=measurements, chargers=tuple(chargers))


def wired(c: Charger, phases: int) -> list[int]:
    return list(range(min(c.phases, len(c.phase_map), phases)))


def lines_used(c: Charger, phases: int) -> list[int]:
    """Site phase indexes a charger's allocation lands on (as the contract defines)."""
    wired_lines = wired(c, phases)
    drawing = [k for k in wired_lines if c.draw_a[k] > 1.0]
    if c.status in ACTIVE_STATUSES and 0 < len(drawing) < len(wired_lines):
        wired_lines = drawing
    return [PHASE_NAMES.index(c.phase_map[k]) for k in wired_lines]


def household(snap: Snapshot) -> list[float]:
    h = list(snap.measurements.grid_current_a)
    for c in snap.chargers:
        for k in wired(c, snap.site.phases):
            h[PHASE_NAMES.index(c.phase_map[k])] -= c.draw_a[k]
    return h


def per_phase_totals(snap: Snapshot, result, ids=None) -> list[float]:
    totals = [0.0] * snap.site.phases
    for c in snap.chargers:
        if ids is not None and c.id not in ids:
            continue
        for p in lines_used(c, snap.site.phases):
            totals[p] += result.by_id[c.id].allocated_a
    return totals


def battery_room_a(snap: Snapshot) -> float:
    """Everything the battery could add (redirected charge + extra discharge), in amps."""
    b, m = snap.site.battery, snap.measurements
    if b is None or m.battery_soc is None:
        return 0.0
    power = m.battery_power_w or 0.0
    return (max(0.0, -power) + max(0.0, b.max_discharge_w - max(0.0, power))) / 230.0


@settings(deadline=None)
@given(snapshots())
def test_every_allocation_is_zero_or_within_min_max(snap):
    result = allocate(snap)
    for c in snap.chargers:
        a = result.by_id[c.id]
        assert a.allocated_a == 0 or c.min_a - TOL <= a.allocated_a <= c.max_a + TOL
        assert round(a.allocated_a * 10, 6) == int(round(a.allocated_a * 10, 6))
        if c.status not in ACTIVE_STATUSES:
            assert a.allocated_a == 0
        assert a.available_a == 0 or c.min_a - TOL <= a.available_a <= c.max_a + TOL


@settings(deadline=None)
@given(snapshots(with_battery=False))
def test_no_phase_above_breaker_headroom(snap):
    result = allocate(snap)
    h = household(snap)
    site = snap.site
    totals = per_phase_totals(snap, result)
    asymmetric = site.inverter is not None and site.inverter.asymmetric
    exports = sum(max(0.0, -x) for x in h)
    for p, total in enumerate(totals):
        if not site.allow_grid_charging:
            bound = exports if asymmetric else max(0.0, -h[p])
        elif asymmetric:
            # An asymmetric inverter may move export from another phase onto this one.
            bound = max(0.0, site.main_breaker_a - max(0.0, h[p])) + exports
        else:
            bound = max(0.0, site.main_breaker_a - h[p])
        assert total <= bound + TOL, (p, totals, h)
    # All phases together never get more than the breaker and the export allow.
    overall = sum(max(0.0, site.main_breaker_a - max(0.0, x)) for x in h) + exports
    assert sum(totals) <= overall + TOL


@settings(deadline=None)
@given(snapshots(with_battery=True))
def test_battery_adds_no_more_than_it_can_give(snap):
    result = allocate(snap)
    h = household(snap)
    site = snap.site
    grid = (
        sum(max(0.0, site.main_breaker_a - max(0.0, x)) for x in h)
        if site.allow_grid_charging
        else 0
    )
    bound = grid + sum(max(0.0, -x) for x in h) + battery_room_a(snap)
    assert sum(per_phase_totals(snap, result)) <= bound + TOL


@settings(deadline=None)
@given(snapshots())
def test_no_circuit_above_its_limit(snap):
    result = allocate(snap)
    for circuit in snap.site.circuits:
        for total in per_phase_totals(snap, result, set(circuit.chargers)):
            assert total <= circuit.limit_a + TOL


@settings(deadline=None)
@given(snapshots(with_battery=False))
def test_import_cap_kept(snap):
    cap = snap.site.max_import_w
    if cap is None:
        return
    result = allocate(snap)
    h = household(snap)
    totals = per_phase_totals(snap, result)
    before = sum(max(0.0, x) for x in h) * 230
    inverter = snap.site.inverter
    if inverter is not None and inverter.asymmetric:
        # The inverter may move export from one phase to a charger on another.
        export = sum(max(0.0, -x) for x in h)
        after = before + max(0.0, sum(totals) - export) * 230
    else:
        after = sum(max(0.0, x + a) for x, a in zip(h, totals, strict=True)) * 230
    assert after <= max(cap, before) + 1e-3


@settings(deadline=None)
@given(snapshots())
def test_surplus_modes_never_get_more_than_the_surplus(snap):
    result = allocate(snap)
    h = household(snap)
    m, b = snap.measurements, snap.site.battery
    export = sum(max(0.0, -x) for x in h)
    surplus = export + battery_room_a(snap)
    if b is not None and m.battery_soc is not None and m.battery_soc < b.soc_target:
        surplus = export  # below target the battery keeps the sun
    excess = max(0.0, export * 230 - snap.site.excess_threshold_w) / 230
    solar_like = excess_above_min = 0.0
    for c in snap.chargers:
        a = result.by_id[c.id].allocated_a
        n = len(lines_used(c, snap.site.phases))
        if c.mode is Mode.SOLAR:
            solar_like += a * n
        elif c.mode is Mode.ECO:
            solar_like += max(0.0, a - c.min_a) * n
        elif c.mode is Mode.EXCESS:
            excess_above_min += max(0.0, a - c.min_a) * n
    assert solar_like <= surplus + TOL
    assert excess_above_min <= excess + TOL


@settings(deadline=None)
@given(snapshots(distinct_priorities=True), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_listing_order(snap, rnd):
    chargers = list(snap.chargers)
    rnd.shuffle(chargers)
    shuffled = snap._replace(chargers=tuple(chargers))
    first, second = allocate(snap), allocate(shuffled)
    for c in snap.chargers:
        assert first.by_id[c.id] == second.by_id[c.id]


@st.composite
def standard_sites(draw):
    """Standard chargers only, grid only: every limit is a breaker, cap or circuit."""
    snap = draw(snapshots(with_battery=False))
    chargers = tuple(c._replace(mode=Mode.STANDARD) for c in snap.chargers)
    distribution = draw(
        st.sampled_from([Distribution.SHARED, Distribution.PRIORITY, Distribution.STRICT])
    )
    site = snap.site._replace(inverter=None, allow_grid_charging=True, distribution=distribution)
    return snap._replace(site=site, chargers=chargers)


@given(standard_sites())
@settings(deadline=None)
def test_no_capacity_is_left_that_a_charger_below_its_max_could_use(snap):
    result = allocate(snap)
    site, h = snap.site, household(snap)
    totals = per_phase_totals(snap, result)
    # Rounding each grant down to 0.1 A may leave up to 0.1 A per charger unused.
    step = 0.1 * (len(snap.chargers) + 1)
    importing = sum(max(0.0, x + t) for x, t in zip(h, totals, strict=True))
    for c in snap.chargers:
        a = result.by_id[c.id].allocated_a
        if c.status not in ACTIVE_STATUSES or a == 0 or a > c.max_a - step:
            continue
        if c.status == "SuspendedEV" and c.idle_s >= site.release_after_s and sum(c.draw_a) < 1:
            continue  # released: its minimum only
        phases = lines_used(c, site.phases)
        blocked = any(totals[p] + step > site.main_breaker_a - h[p] for p in phases)
        if site.max_import_w is not None:
            extra = sum(
                max(0.0, h[p] + totals[p] + step) - max(0.0, h[p] + totals[p]) for p in phases
            )
            blocked |= (importing + extra) * 230 > site.max_import_w
        for circuit in site.circuits:
            if c.id in circuit.chargers:
                inside = per_phase_totals(snap, result, set(circuit.chargers))
                blocked |= any(inside[p] + step > circuit.limit_a for p in phases)
        assert blocked, (c.id, a, totals, h)
