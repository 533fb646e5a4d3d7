"""Shared test plumbing: loopback ports, config files, and the `sensor-bridge` command.

Tests drive the real programs; these helpers only start them and write their
config files. Every address used is loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the simulators are imported by the fixtures, not by every test's start
    from appliance.sim.camera import SimCamera
    from appliance.sim.receiver import SimReceiver

# The LED must never touch real pins in a test.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "appliance"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port_url() -> str:
    """A loopback URL that refuses connections: an unreachable sensor without leaving the host."""
    return f"http://127.0.0.1:{free_port()}"


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_config(path: Path, tables: dict[str, object]) -> Path:
    """Write a TOML config from ``{"uplink": {...}, "sensors": [{...}], ...}``."""
    lines: list[str] = []
    for name, body in tables.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            lines.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            for key, value in row.items():
                lines.append(f"{key} = {toml_value(value)}")
            lines.append("")
    path.write_text("\n".join(lines))
    return path


def base_tables(tmp_path: Path, uplink_url: str, api_key: str = "test-key") -> dict[str, object]:
    """A minimal valid config pointing at ``uplink_url``, with state under ``tmp_path``."""
    return {
        "bridge": {"id": "store-test", "timezone": "Europe/Lisbon", "require_time_sync": False},
        "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
        "uplink": {"url": uplink_url, "api_key": api_key, "heartbeat_s": 1},
        "health": {"listen": f"127.0.0.1:{free_port()}"},
        "led": {"backend": "none"},
    }


def run_cli(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs
    )


@pytest.fixture
def config_file(tmp_path: Path):
    """Factory: ``config_file(tables)`` writes tmp_path/config.toml and returns its path."""

    def make(tables: dict[str, object], name: str = "config.toml") -> Path:
        return write_config(tmp_path / name, tables)

    return make


# ---------------------------------------------------------------- a store's camera, the cloud


@pytest.fixture
def camera() -> Iterator[SimCamera]:
    """A simulated Milesight camera in Lisbon (2 lines, 2 regions, the same counts every run)."""
    from appliance.sim.camera import SimCamera

    with SimCamera(
        timezone="Europe/Lisbon", username="admin", password="pw", lines=2, regions=2, seed=7
    ) as cam:
        yield cam


@pytest.fixture
def receiver_key() -> str:
    """The API key :func:`receiver` accepts; base_tables' default (a test file may override it)."""
    return "test-key"


@pytest.fixture
def receiver(tmp_path: Path, receiver_key: str) -> Iterator[SimReceiver]:
    """The reference ingest receiver on loopback, storing in ``tmp_path/cloud.db``."""
    from appliance.sim.receiver import SimReceiver

    with SimReceiver(db_path=tmp_path / "cloud.db", api_key=receiver_key) as rx:
        yield rx
