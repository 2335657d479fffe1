"""Boots the VM of tests/test_vm_x86.py or tests/vm/check_arm64.py once (tests/vm/vm.sh)
and reads its verdicts.

tests/vm/guest.sh prints one "VMCHECK <name> PASS|FAIL <detail>" line per check on the
serial console; `boot` returns them by name. A machine that cannot run the VM fails the
test with vm.sh's reason: these tests are never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HARNESS = Path(__file__).parent / "vm.sh"

Results = dict[str, tuple[str, str]]


def boot(out: Path, arch: str, boot_s: float, build_s: float) -> Results:
    """Build (or find) the cached root, then boot it: qemu gets `boot_s`, the cold build
    of the root before it `build_s`."""
    # PYTHON: this venv's interpreter serves the RTU meter (pymodbus) and fetches wheels.
    env = dict(os.environ, PYTHON=sys.executable, EVSE_VM_TIMEOUT=str(int(boot_s)))
    run = subprocess.run(
        [str(HARNESS), "run", str(out), arch],
        capture_output=True,
        text=True,
        timeout=boot_s + build_s,
        env=env,
    )
    console = out / "console.log"
    log = console.read_text(errors="replace") if console.exists() else ""
    if run.returncode != 0:
        pytest.fail(f"the VM could not run: {run.stderr.strip()}\n{log[-3000:]}", pytrace=False)
    results: Results = {}
    for line in log.splitlines():
        if line.startswith("VMCHECK "):
            _, name, verdict, detail = [*line.split(" ", 3), ""][:4]
            results[name] = (verdict, detail)
    if "VMDONE" not in log:
        pytest.fail(f"the guest checks did not finish:\n{log[-3000:]}", pytrace=False)
    return results


def results_fixture(arch: str, boot_s: float, build_s: float) -> Any:
    """A module fixture `vm_results`: one boot of `arch` for all of a test file's checks."""

    @pytest.fixture(scope="module")
    def vm_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
        return boot(tmp_path_factory.mktemp(f"vm-{arch}"), arch, boot_s, build_s)

    return vm_results


def verdict(results: Results, check: str) -> None:
    assert check in results, f"guest.sh did not report {check!r}"
    passed, detail = results[check]
    assert passed == "PASS", f"{check}: {detail}"


def cpu_ms_per_cycle(results: Results) -> float:
    """The daemon's CPU time per control cycle in the guest (check cycle_cpu)."""
    _, detail = results.get("cycle_cpu", ("", ""))
    return float(detail.split()[1])
