"""The install under a real systemd (issue #18): tests/vm/vm.sh boots a Debian bookworm VM
(qemu, x86-64, systemd as PID 1), runs install.sh there as the README says and checks the
service with the simulated site inside the VM. tests/vm/guest.sh prints one VMCHECK line
per check; each test here asserts one of them. A machine that cannot run the VM fails
these tests with vm.sh's reason: they are never skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).parent / "vm" / "vm.sh"
CHECKS = [
    "install",
    "started",
    "site",
    "journal_priority",
    "reload",
    "kill9",
    "watchdog",
    "badconfig",
    "security",
    "upgrade",
    "uninstall",
    "purge",
]
# Cold: debootstrap and the image (~3 min here); warm: the boot and the checks under TCG.
BOOT_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def vm_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    out = tmp_path_factory.mktemp("vm")
    run = subprocess.run(
        [str(HARNESS), "run", str(out)],
        capture_output=True,
        text=True,
        timeout=BOOT_TIMEOUT_S + 120,
    )
    console = out / "console.log"
    log = console.read_text(errors="replace") if console.exists() else ""
    if run.returncode != 0:
        pytest.fail(f"the VM could not run: {run.stderr.strip()}\n{log[-3000:]}", pytrace=False)
    results: dict[str, tuple[str, str]] = {}
    for line in log.splitlines():
        if line.startswith("VMCHECK "):
            _, name, verdict, detail = [*line.split(" ", 3), ""][:4]
            results[name] = (verdict, detail)
    if "VMDONE" not in log:
        pytest.fail(f"the guest checks did not finish:\n{log[-3000:]}", pytrace=False)
    return results


@pytest.mark.timeout(BOOT_TIMEOUT_S + 300)
@pytest.mark.parametrize("check", CHECKS)
def test_vm_check(vm_results: dict[str, tuple[str, str]], check: str) -> None:
    assert check in vm_results, f"guest.sh did not report {check!r}"
    verdict, detail = vm_results[check]
    assert verdict == "PASS", f"{check}: {detail}"


# `systemd-analyze security evse-gateway` on bookworm's systemd 252 (docs/install.md).
EXPOSURE_MAX = 1.6


@pytest.mark.timeout(BOOT_TIMEOUT_S + 300)
def test_vm_security_exposure_not_worse(vm_results: dict[str, tuple[str, str]]) -> None:
    _, detail = vm_results.get("security", ("", ""))
    score = float(detail.split("exposure", 1)[1])
    assert score <= EXPOSURE_MAX, f"the unit's exposure rose to {score} (was {EXPOSURE_MAX})"
