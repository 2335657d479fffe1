"""The command table: a command imports its own module only; --help shows them all."""

from __future__ import annotations

import subprocess
import sys

from gateway.cli import COMMANDS
from tests.conftest import ROOT

# After `allocate` ran, which command modules are loaded.
PROBE = """\
import sys
from gateway.cli import COMMANDS, main
code = main(["allocate", "examples/snapshot.json", "--indent", "0"])
print(sorted(m for m, _ in COMMANDS.values() if m in sys.modules))
sys.exit(code)
"""


def test_a_command_imports_only_its_own_module():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    *allocation, loaded = result.stdout.splitlines()
    assert '"chargers"' in allocation[0]
    assert loaded == "['gateway.allocation.command']"


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    for name, (_, help_text) in COMMANDS.items():
        assert name in result.stdout and help_text in result.stdout


def test_a_commands_own_help_and_errors_still_come_from_its_arguments(cli):
    result = cli("simulate", "--help")
    assert result.returncode == 0 and "--plot" in result.stdout
    result = cli("allocate")
    assert result.returncode == 2 and "snapshot" in result.stderr
    result = cli("no-such-command")
    assert result.returncode == 2 and "invalid choice" in result.stderr
