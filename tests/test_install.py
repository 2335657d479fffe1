"""install.sh into a temporary root: files, modes, the unit, idempotence, upgrade, removal.

install.sh runs for real, with `--root` (nothing outside the temporary root changes, no
apt, no user, only the offline `systemctl --root` enable/disable) and Debian's own
/usr/bin/python3, as on a Pi. It builds from a copy of this checkout without the network:
the venv sees Debian's python3-setuptools/python3-wheel (--system-site-packages) and pip
gets --no-index --no-build-isolation --no-deps. So the installed venv lacks pymodbus & co:
these tests run only stdlib commands from it (check-config, --version); a real install
fetches the dependencies. `./dev.sh test` apt-installs what these tests need.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"
OFFLINE = (
    "--python",
    DEBIAN_PYTHON,
    "--system-site-packages",
    "--pip-args",
    "--no-index --no-build-isolation --no-deps",
)
SOURCE_PARTS = ("install.sh", "pyproject.toml", "README.md", "gateway", "systemd", "docs")
UNIT = "etc/systemd/system/evse-gateway.service"
CONFIG = "etc/evse-gateway/config.toml"
VENV_BIN = "opt/evse-gateway/venv/bin"

EXAMPLE = """\
[site]
phases = 3
main_breaker_a = 25

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"

[[chargers]]
id = "garage"
max_a = 16
"""


def make_source(dest: Path) -> Path:
    """A copy of this checkout with a small valid config/example.toml of its own."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in SOURCE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    (dest / "config").mkdir()
    (dest / "config" / "example.toml").write_text(EXAMPLE)
    return dest


def make_pi_root(root: Path) -> Path:
    """What the OS provides to the unit on a Pi: systemd's own units and /bin/kill."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")
    return root


def unit_root(root: Path, unit_text: str) -> Path:
    """A Pi root holding just a unit and an executable where its ExecStart points."""
    make_pi_root(root)
    unit = root / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(unit_text)
    (root / VENV_BIN).mkdir(parents=True)
    exe = root / VENV_BIN / "evse-gateway"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def install(source: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    # The machine's pip config (extra indexes, find-links) must not leak into the test.
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    env.pop("DESTDIR", None)
    return subprocess.run(
        ["bash", str(source / "install.sh"), "--root", str(root), *OFFLINE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def installed(source: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    result = install(source, root, *args)
    hint = "\n(bdist_wheel or setuptools missing? ./dev.sh test apt-installs python3-wheel)"
    assert result.returncode == 0, result.stdout + result.stderr + hint
    return result


def tree_digest(root: Path) -> str:
    """Every path, its mode, and its content or link target."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        h.update(f"{path.relative_to(root)} {info.st_mode:o}\n".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}", "evse-gateway.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    # Without PYTHONPATH, so the installed code answers, not this checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(root / VENV_BIN / "evse-gateway"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One install shared by the read-only tests below."""
    source = make_source(tmp_path_factory.mktemp("src"))
    root = make_pi_root(tmp_path_factory.mktemp("root"))
    return root, installed(source, root)


def test_fresh_install_layout_and_modes(fresh):
    root, result = fresh
    config = root / CONFIG
    assert config.read_text() == EXAMPLE
    assert mode(config) == 0o640  # charger passwords
    assert mode(root / "etc/evse-gateway") == 0o750
    assert mode(root / "var/lib/evse-gateway") == 0o750
    assert (root / UNIT).read_bytes() == (ROOT / "systemd/evse-gateway.service").read_bytes()
    assert mode(root / UNIT) == 0o644
    wants = root / "etc/systemd/system/multi-user.target.wants/evse-gateway.service"
    assert os.readlink(wants) == "/etc/systemd/system/evse-gateway.service"
    assert not (root / (UNIT + ".d")).exists()  # no port below 1024 in the example
    assert (root / "opt/evse-gateway/docs/install.md").is_file()
    assert "would restart evse-gateway.service" in result.stdout


def test_the_installed_command_checks_the_installed_config(fresh):
    root, _ = fresh
    assert cli(root, "--version").stdout.strip() == f"evse-gateway {__version__}"
    checked = cli(root, "check-config", str(root / CONFIG))
    assert checked.returncode == 0, checked.stderr
    assert "charger garage" in checked.stdout
    # The venv runs Debian's interpreter, as on the Pi.
    cfg = (root / "opt/evse-gateway/venv/pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg


def test_systemd_analyze_verify_accepts_the_installed_unit(fresh):
    root, _ = fresh
    verified = analyze(root, "verify")
    assert (verified.returncode, verified.stderr) == (0, "")
    security = analyze(root, "security", "--offline=true")
    assert "Service process does not receive ambient capabilities" in security.stdout
    assert "Overall exposure level for evse-gateway.service" in security.stdout


def test_systemd_analyze_verify_catches_a_bad_unit(tmp_path):
    # The check above can fail: the same root with one misspelt key does not pass.
    text = (ROOT / "systemd/evse-gateway.service").read_text()
    root = unit_root(tmp_path, text.replace("NoNewPrivileges=", "NoNewPrivilege="))
    verified = analyze(root, "verify")
    assert "Unknown key 'NoNewPrivilege'" in verified.stderr


def test_rerun_changes_nothing_and_upgrade_keeps_the_edited_config(tmp_path):
    source = make_source(tmp_path / "src")
    root = make_pi_root(tmp_path / "root")
    installed(source, root)
    before = tree_digest(root)
    again = installed(source, root)
    assert tree_digest(root) == before
    assert "installing" not in again.stdout

    config = root / CONFIG
    edited = EXAMPLE.replace("main_breaker_a = 25", "main_breaker_a = 35  # our fuse")
    config.write_text(edited)
    init = source / "gateway/__init__.py"
    init.write_text(init.read_text().replace(__version__, "99.0.0"))
    (source / "config/example.toml").write_text(EXAMPLE + "# new keys\n")
    upgraded = installed(source, root, "--upgrade")
    assert "would restart evse-gateway.service" in upgraded.stdout
    assert cli(root, "--version").stdout.strip() == "evse-gateway 99.0.0"
    assert config.read_text() == edited
    assert mode(config) == 0o640
    # The new example sits next to the config, to compare after an upgrade.
    assert (root / "etc/evse-gateway/example.toml").read_text().endswith("# new keys\n")


def test_a_bad_config_stops_the_restart(tmp_path):
    source = make_source(tmp_path / "src")
    root = make_pi_root(tmp_path / "root")
    installed(source, root)
    config = root / CONFIG
    config.write_text(EXAMPLE.replace("max_a = 16", "max_a = 16\nmax_amps = 16"))

    rerun = install(source, root)
    assert rerun.returncode == 2
    assert f"{config}:14: chargers[0].max_amps: unknown key" in rerun.stderr
    assert "not (re)starting evse-gateway" in rerun.stderr
    assert "restart" not in rerun.stdout

    # An upgrade whose code rejects the config changes nothing at all.
    before = tree_digest(root)
    init = source / "gateway/__init__.py"
    init.write_text(init.read_text().replace(__version__, "99.0.0"))
    refused = install(source, root, "--upgrade")
    assert refused.returncode == 2
    assert "the new code rejects /etc/evse-gateway/config.toml" in refused.stderr
    assert tree_digest(root) == before
    assert cli(root, "--version").stdout.strip() == f"evse-gateway {__version__}"


def test_the_unedited_example_with_its_placeholder_password_is_not_started(tmp_path):
    source = make_source(tmp_path / "src")
    (source / "config/example.toml").write_text(EXAMPLE + 'password = "change-me"\n')
    root = make_pi_root(tmp_path / "root")
    result = install(source, root)
    assert result.returncode == 2
    assert f"{root / CONFIG}:14: chargers[0].password: still the example's" in result.stderr
    assert "not (re)starting evse-gateway" in result.stderr
    assert "restart" not in result.stdout


def test_uninstall_keeps_config_and_purge_removes_it(tmp_path):
    source = make_source(tmp_path / "src")
    root = make_pi_root(tmp_path / "root")
    installed(source, root)
    (root / "var/lib/evse-gateway/state.json").write_text("{}")

    installed(source, root, "--uninstall")
    assert not (root / "opt/evse-gateway").exists()
    assert not (root / UNIT).exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/evse-gateway.service").exists()
    assert (root / CONFIG).read_text() == EXAMPLE
    assert (root / "var/lib/evse-gateway/state.json").exists()

    purged = installed(source, root, "--uninstall", "--purge")
    assert not (root / "etc/evse-gateway").exists()
    assert not (root / "var/lib/evse-gateway").exists()
    assert "removed /etc/evse-gateway and /var/lib/evse-gateway" in purged.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--purge",), "--purge goes with --uninstall"),
        (("--upgrade",), "nothing to upgrade"),
        (("--frobnicate",), "unknown option: --frobnicate"),
        (("--python", "/nonexistent/python3"), "'/nonexistent/python3' not found"),
    ],
)
def test_wrong_use_is_refused_with_a_reason(tmp_path, args, message):
    source = make_source(tmp_path / "src")
    result = install(source, tmp_path / "root", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "root/opt").exists()


# The drop-in that grants CAP_NET_BIND_SERVICE exactly when the config listens below 1024.

SCRIPT = ROOT / "systemd/low_port_dropin.py"


def dropin_for(tmp_path: Path, config: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(config)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "config",
    [
        "[site]\nmain_breaker_a = 25\n",
        "[export]\nport = 1502\n[ocpp]\nport = 9000\n",
        "[export]\nport = 502\nenabled = false\n",
        # The gateway connects to a meter on 502: no capability needed for that.
        '[[meters]]\nhost = "192.168.1.20"\nport = 502\n',
    ],
)
def test_no_low_port_no_dropin(tmp_path, config):
    assert dropin_for(tmp_path, config) == ""


def test_a_server_below_1024_gets_the_capability(tmp_path):
    text = dropin_for(tmp_path, "[export]\nport = 502\n[ocpp]\nport = 443\n")
    assert "(export.port=502, ocpp.port=443)" in text
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in text
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in text


def test_systemd_accepts_the_dropin_and_grants_the_capability(tmp_path):
    root = unit_root(tmp_path / "root", (ROOT / "systemd/evse-gateway.service").read_text())
    dropin = root / (UNIT + ".d/low-port.conf")
    dropin.parent.mkdir()
    dropin.write_text(dropin_for(tmp_path, "[export]\nport = 502\n"))

    verified = analyze(root, "verify")
    assert (verified.returncode, verified.stderr) == (0, "")
    security = analyze(root, "security", "--offline=true")
    assert "Service process receives ambient capabilities" in security.stdout
