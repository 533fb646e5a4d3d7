"""The systemd units: systemd accepts every line, each is sandboxed (exposure <= 4.0), and
every command they run is one `sensor-bridge` knows.

`systemd-analyze verify` wants the ExecStart binary to exist, so each unit is checked as a
temporary copy whose /opt/sensor-bridge/venv/bin/sensor-bridge points at this venv's.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.http_server import MAX_CONNECTIONS
from appliance.status import UNITS

UNIT_DIR = Path(__file__).resolve().parents[1] / "appliance" / "units"
UNIT_FILES = sorted(UNIT_DIR.glob("*.service"))
INSTALLED_BIN = "/opt/sensor-bridge/venv/bin/sensor-bridge"
OUR_BIN = str(Path(sys.executable).parent / "sensor-bridge")
MAX_EXPOSURE = 4.0

needs_analyze = pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="needs systemd-analyze (systemd)"
)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def local_copy(unit: Path, into: Path) -> Path:
    copy = into / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_BIN, OUR_BIN))
    return copy


def complaints(result: subprocess.CompletedProcess[str], *names: str) -> list[str]:
    """systemd-analyze lines about our files (it warns on stderr and still exits 0)."""
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(n in line for n in names)
    ]


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=true", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


def test_there_is_a_unit_for_every_service():
    assert {UNITS[s] for s in UNITS} <= {f.name for f in UNIT_FILES}


@needs_analyze
@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_systemd_accepts_the_unit(unit: Path, tmp_path):
    result = analyze("verify", "--man=no", str(local_copy(unit, tmp_path)))
    assert result.returncode == 0 and not complaints(result, unit.name), result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_the_unit_is_sandboxed(unit: Path):
    score = exposure(unit)
    print(f"{unit.name}: exposure {score}")
    assert score <= MAX_EXPOSURE


@needs_analyze
def test_the_mosquitto_drop_in_applies_cleanly(tmp_path):
    debian_unit = next(
        (
            p
            for p in (
                Path("/lib/systemd/system/mosquitto.service"),
                Path("/usr/lib/systemd/system/mosquitto.service"),
            )
            if p.exists()
        ),
        None,
    )
    if debian_unit is None:
        pytest.skip("needs Debian's mosquitto package (its unit is what the drop-in changes)")
    shutil.copy(debian_unit, tmp_path / "mosquitto.service")
    shutil.copytree(UNIT_DIR / "mosquitto.service.d", tmp_path / "mosquitto.service.d")
    result = analyze("verify", "--man=no", str(tmp_path / "mosquitto.service"))
    assert result.returncode == 0 and not complaints(result, "mosquitto"), result.stderr
    show = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(tmp_path / "mosquitto.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Service cannot change system host/domainname" in show.stdout  # the drop-in was read
    assert exposure(tmp_path / "mosquitto.service") <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_the_unit_runs_commands_sensor_bridge_knows(unit: Path):
    parser = build_parser()
    commands = re.findall(
        rf"^Exec\w+=[-+!@:]*{re.escape(INSTALLED_BIN)} (.*)$", unit.read_text(), re.M
    )
    assert commands or unit.name not in UNITS.values()
    for command in commands:
        argv = shlex.split(command)
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            if argv[-1] == "relay" and not (UNIT_DIR.parent / "relay.py").exists():
                pytest.skip("appliance/relay.py is not written yet")
            pytest.fail(f"{unit.name}: sensor-bridge does not know `{command}`")
        assert callable(getattr(args, "func", None)), command


def test_units_share_the_directories_without_taking_them_over():
    """Each service writes its own file in /run/sensor-bridge; none may take the directory away."""
    for unit in UNIT_FILES:
        text = unit.read_text()
        if unit.name == "sensor-bridge-config.service":
            continue
        runs_as_service_user = "User=sensor-bridge" in text
        if runs_as_service_user:
            # Stopping one unit must not delete the others' status files.
            assert (
                "RuntimeDirectory=sensor-bridge\n" in text
                and "RuntimeDirectoryPreserve=yes" in text
            )
        else:
            # For a root unit systemd would chown the directories (and the outbox) to root.
            assert not re.search(r"^(Runtime|State)Directory=", text, re.M), unit.name
            # Optional (-): a root unit may start before either directory exists.
            assert "ReadWritePaths=-/var/lib/sensor-bridge -/run/sensor-bridge" in text, unit.name


@pytest.mark.parametrize("name", ["sensor-bridge.service", "sensor-bridge-relay.service"])
def test_listening_services_have_descriptors_to_spare(name: str):
    """Their HTTP servers' connection cap stays far below the descriptor limit (EMFILE kills the status file)."""
    found = re.search(r"^LimitNOFILE=(\d+)$", (UNIT_DIR / name).read_text(), re.M)
    assert found, f"{name} keeps systemd's default of 1,024 descriptors"
    assert int(found.group(1)) >= 1024 and MAX_CONNECTIONS * 8 <= int(found.group(1))
