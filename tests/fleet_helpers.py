"""Test plumbing for adoption: a fleet agent process, and a stand-in ``systemctl`` that really
(re)starts the collector, so a config the agent applies is run by a real ``sensor-bridge run``.

The agent restarts services with a fixed ``systemctl restart UNIT...`` found on PATH
(appliance/adoption/apply.py). Here PATH starts with a folder whose ``systemctl`` runs
``python tests/fleet_helpers.py systemctl ARGS``: it appends the call to a log, and for
``sensor-bridge.service`` stops the collector it started before and starts a new one when
``sensor-bridge config enabled collector`` says the config turns it on (the unit's
ExecCondition). Everything it starts talks to loopback only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
CLI = [sys.executable, "-m", "appliance"]


def fake_systemd(folder: Path) -> dict[str, str]:
    """The environment that makes ``systemctl`` the stand-in, keeping its files in ``folder``."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "systemctl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE}" systemctl "$@"\n')
    shim.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_SYSTEMD_DIR": str(folder),
    }


def start_agent(config: Path, boot: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    log = open(config.parent / "agent.log", "a")  # noqa: SIM115 - the process holds it
    return subprocess.Popen(
        [*CLI, "-c", str(config), "-v", "fleet", "--boot-dir", str(boot)],
        cwd=REPO,
        text=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env, "SENSOR_BRIDGE_CONFIG": str(config)},
    )


def stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def collector_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "collector.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def stop_collector(folder: Path) -> None:
    pid = collector_pid(folder)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def calls(folder: Path) -> list[list[str]]:
    try:
        return [json.loads(line) for line in (folder / "calls.log").read_text().splitlines()]
    except OSError:
        return []


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _systemctl(args: list[str]) -> int:
    folder = Path(os.environ["FAKE_SYSTEMD_DIR"])
    with open(folder / "calls.log", "a") as log:
        log.write(json.dumps(args) + "\n")
    if args[:1] != ["restart"] or "sensor-bridge.service" not in args[1:]:
        return 0
    stop_collector(folder)
    config = os.environ["SENSOR_BRIDGE_CONFIG"]
    enabled = subprocess.run(
        [*CLI, "-c", config, "config", "enabled", "collector"], cwd=REPO, capture_output=True
    )
    if enabled.returncode != 0:
        return 0
    out = open(folder / "collector.log", "a")  # noqa: SIM115 - the collector holds it
    proc = subprocess.Popen(
        [*CLI, "-c", config, "run"],
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (folder / "collector.pid").write_text(str(proc.pid))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["systemctl"]:
        sys.exit(_systemctl(sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} systemctl ARGS")
