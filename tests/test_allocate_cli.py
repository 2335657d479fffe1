"""`evse-gateway allocate`: the public JSON contract, run as a real subprocess."""

from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import ROOT, run_cli

EXAMPLE = json.loads((ROOT / "examples" / "snapshot.json").read_text())


def test_example_snapshot_from_file_and_stdin_agree():
    from_file = run_cli("allocate", "examples/snapshot.json")
    from_stdin = run_cli("allocate", "-", input=json.dumps(EXAMPLE))
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == from_stdin.stdout
    out = json.loads(from_file.stdout)
    assert set(out) == {"site", "chargers"}
    assert set(out["site"]) == {"household_a", "export_w", "headroom_a", "battery_soc"}
    assert list(out["chargers"]) == ["c1", "c2", "c3"]
    for entry in out["chargers"].values():
        assert set(entry) == {
            "allocated_a",
            "target_a",
            "phases",
            "mode",
            "available_a",
            "reason",
        }
    assert out["chargers"]["c2"]["allocated_a"] == 16.0
    assert out["site"]["household_a"] == [3.0, -6.5, -2.0]


def test_optional_sections_may_be_absent():
    minimal = {
        "site": {"main_breaker_a": 25},
        "measurements": {"grid_current_a": [9, 9, 9]},
        "chargers": [{"id": "c1", "min_a": 6, "max_a": 16, "status": "Charging"}],
    }
    result = run_cli("allocate", "-", input=json.dumps(minimal))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chargers"]["c1"]["allocated_a"] == 16.0


def mutated(change) -> str:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    return json.dumps(data)


BAD_INPUTS = [
    (
        "missing field",
        lambda d: d["site"].pop("main_breaker_a"),
        "site.main_breaker_a: is required",
    ),
    (
        "unknown field",
        lambda d: d["chargers"][0].update(colour="red"),
        "chargers[0].colour: unknown key",
    ),
    ("unknown top key", lambda d: d.update(extra=1), "extra: unknown key"),
    (
        "wrong type",
        lambda d: d["chargers"][1].update(max_a="16"),
        "chargers[1].max_a: must be a number",
    ),
    (
        "min above max",
        lambda d: d["chargers"][1].update(max_a=5),
        "chargers[1].max_a: must be >= min_a (6)",
    ),
    (
        "unknown mode",
        lambda d: d["chargers"][0].update(mode="turbo"),
        "chargers[0].mode: must be one of",
    ),
    (
        "phase map off site",
        lambda d: d["chargers"][0].update(phase_map="ABD"),
        "chargers[0].phase_map",
    ),
    (
        "phase map on 1-phase site",
        lambda d: (d["site"].update(phases=1), d["measurements"].update(grid_current_a=[1])),
        "chargers[0].phase_map",
    ),
    (
        "negative breaker",
        lambda d: d["site"].update(main_breaker_a=-25),
        "site.main_breaker_a: must be >= 1",
    ),
    (
        "zero breaker",
        lambda d: d["site"].update(main_breaker_a=0),
        "site.main_breaker_a: must be >= 1",
    ),
    (
        "grid phases",
        lambda d: d["measurements"].update(grid_current_a=[1, 2]),
        "measurements.grid_current_a: must have 3 entries",
    ),
    ("bad status", lambda d: d["chargers"][0].update(status="Sleeping"), "chargers[0].status"),
    ("unknown distribution", lambda d: d["site"].update(distribution="fair"), "site.distribution"),
    (
        "circuit member",
        lambda d: d["site"]["circuits"][0]["chargers"].append("nope"),
        "site.circuits[0].chargers[2]: no charger with id 'nope'",
    ),
    ("duplicate id", lambda d: d["chargers"][1].update(id="c1"), "chargers[1].id: duplicate"),
    (
        "soc range",
        lambda d: d["measurements"].update(battery_soc=120),
        "measurements.battery_soc: must be <= 100",
    ),
    (
        "bool as number",
        lambda d: d["site"].update(main_breaker_a=True),
        "site.main_breaker_a: must be a number",
    ),
    (
        "charger phases",
        lambda d: d["chargers"][0].update(phases=4),
        "chargers[0].phases: must be 1, 2 or 3",
    ),
]


@pytest.mark.parametrize(("name", "change", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_naming_the_field(name, change, message):
    result = run_cli("allocate", "-", input=mutated(change))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_invalid_json_and_missing_file_exit_2():
    bad = run_cli("allocate", "-", input='{"site": ')
    assert bad.returncode == 2 and "stdin:1: not valid JSON" in bad.stderr
    missing = run_cli("allocate", "no/such.json")
    assert missing.returncode == 2 and "no/such.json: cannot read" in missing.stderr
