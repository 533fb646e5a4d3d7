"""Adoption, the bridge's side, with the real programs: a bridge with only ``[fleet]`` enrolls
at the reference receiver, shows its claim code, is claimed, runs the config the cloud sends
(a real collector polling two simulated cameras), rolls back a version that breaks a camera,
keeps its config while the cloud is away, gives way to a card's config, and a re-flashed
card enrolls anew. Loopback only.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, run_cli, wait_for, write_config
from fleet_helpers import (
    calls,
    collector_pid,
    fake_systemd,
    read_json,
    start_agent,
    stop_collector,
    stop_process,
)

from appliance.fleet import adoption_facts
from appliance.sim.camera import SimCamera
from appliance.sim.contract_rules import heartbeat_problem
from appliance.sim.receiver import SimReceiver

CLAIM_CODE = r"^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{4}-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{4}$"


def fleet_only(tmp_path: Path, receiver: SimReceiver, token: str, gate_s: float = 20) -> Path:
    """What an image built with --fleet-url holds: [fleet] and the bridge's local tables."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "enroll-token").write_text(token + "\n")
    return write_config(
        etc / "config.toml",
        {
            "fleet": {
                "url": receiver.origin,
                "enroll_token_file": str(etc / "enroll-token"),
                "gate_s": gate_s,
                "check_s": 1,
            },
            "bridge": {"require_time_sync": False},
            "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
            "health": {"listen": f"127.0.0.1:{free_port()}"},
            "led": {"backend": "none"},
        },
    )


def camera_table(sensor_id: str, camera: SimCamera, password: str = "pw") -> dict[str, Any]:
    return {
        "id": sensor_id,
        "url": camera.url,
        "username": "admin",
        "password": password,
        "interval_s": 1,
        "backfill_h": 2,
        "collect": ["line_counts"],
        "timeout_s": 2,
    }


def fleet_status(tmp_path: Path) -> dict[str, Any]:
    return read_json(tmp_path / "run" / "fleet.json") or {}


def fleet_state(tmp_path: Path) -> dict[str, Any]:
    return read_json(tmp_path / "state" / "fleet" / "state.json") or {}


def health(config: Path) -> dict[str, Any]:
    listen = next(
        line.split('"')[1] for line in config.read_text().splitlines() if line.startswith("listen")
    )
    with urllib.request.urlopen(f"http://{listen}/health", timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture
def cameras() -> Any:
    with (
        SimCamera(username="admin", password="pw", lines=2, regions=1, seed=1) as one,
        SimCamera(username="admin", password="pw", lines=2, regions=1, seed=2) as two,
    ):
        yield one, two


@pytest.fixture
def cloud(tmp_path: Path) -> Any:
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="hand-made-bridges-key") as rx:
        rx.adoption.retry_after_s = 1
        yield rx


def heartbeat_body() -> dict[str, Any]:
    return {
        "schema": "sensor-bridge/heartbeat/v1",
        "bridge_id": "porto",
        "version": "0.1.0",
        "sent_at": "2026-12-03T08:00:00Z",
        "uptime_s": 1,
        "state": "ok",
        "outbox": {"pending": 0, "oldest_pending_age_s": 0, "dead_letter": 0, "dropped": 0},
        "sensors": [],
        "host": {"disk_free_mb": None, "mem_used_pct": None, "cpu_temp_c": None, "load1": None},
    }


def wait_claim_code(tmp_path: Path, boot: Path) -> str:
    text = wait_for(
        lambda: (
            (boot / "sensor-bridge-claim.txt").exists()
            and (boot / "sensor-bridge-claim.txt").read_text()
        ),
        timeout=60,
        what="the claim file on the boot partition",
    )
    code = next(w for w in text.split() if len(w) == 9 and w[4] == "-")
    assert __import__("re").match(CLAIM_CODE, code)
    return code


def test_enroll_claim_config_rollback_and_outage(
    tmp_path: Path, cloud: SimReceiver, cameras: Any
) -> None:
    one, two = cameras
    # gate_s: version 1 must pass the gate on a loaded machine; version 2's rollback waits it out.
    config = fleet_only(tmp_path, cloud, cloud.new_enroll_token("test"), gate_s=30)
    boot = tmp_path / "boot"
    boot.mkdir()
    systemd = tmp_path / "systemd"
    env = fake_systemd(systemd)
    checked = run_cli("-c", str(config), "config", "check")
    assert checked.returncode == 0 and "waits to be claimed" in checked.stderr
    agent = start_agent(config, boot, env)
    try:
        code = wait_claim_code(tmp_path, boot)
        # The code shows in status, /health and the LED's state; the enrollment is recorded.
        wait_for(lambda: fleet_status(tmp_path).get("claim_code") == code, what="fleet.json")
        status = run_cli("-c", str(config), "status", "--json")
        report = json.loads(status.stdout)
        assert status.returncode == 0, status.stdout + status.stderr
        assert report["state"] == "unclaimed" and report["fleet"]["claim_code"] == code
        assert code in run_cli("-c", str(config), "status").stdout
        assert health(config)["claim_code"] == code
        wait_for(lambda: len(cloud.adoption.enrollments) == 1, what="the enrollment")
        assert collector_pid(systemd) is None  # nothing to collect before a config comes

        bridge_id = cloud.claim(code, label="Lisbon Chiado", timezone="Europe/Lisbon")
        assert bridge_id == "lisbon-chiado"
        wait_for(
            lambda: fleet_status(tmp_path).get("bridge_id") == bridge_id,
            timeout=60,
            what="the agent to learn it was claimed",
        )
        assert not (boot / "sensor-bridge-claim.txt").exists()

        doc = {
            "bridge": {"timezone": "Europe/Lisbon"},
            "sensors": [camera_table("entrance-1", one), camera_table("entrance-2", two)],
        }
        assert cloud.set_config(bridge_id, doc) == 1
        wait_for(
            lambda: fleet_state(tmp_path).get("status") == "applied",
            timeout=90,
            what="version 1 applied",
        )
        assert fleet_state(tmp_path)["running"] == 1
        assert ["restart", "sensor-bridge.service", "sensor-bridge-relay.service"] in calls(systemd)
        wait_for(
            lambda: (
                {r["sensor_id"] for r in cloud.records(bridge_id).values()}
                == {"entrance-1", "entrance-2"}
            ),
            timeout=60,
            what="readings of both cameras under the claimed id",
        )
        wait_for(
            lambda: (
                (cloud.last_heartbeat(bridge_id) or {}).get("config", {}).get("status") == "applied"
            ),
            timeout=60,
            what="a heartbeat saying version 1 is applied",
        )
        v1_text = config.read_text()
        assert 'id = "lisbon-chiado"' in v1_text and "api_key_file" in v1_text

        # Version 2 breaks a camera (wrong password): the gate fails, v1 comes back by itself.
        broken = {**doc, "sensors": [doc["sensors"][0], camera_table("entrance-2", two, "nope")]}
        assert cloud.set_config(bridge_id, broken) == 2
        wait_for(
            lambda: fleet_state(tmp_path).get("status") == "rolled_back",
            timeout=120,
            what="version 2 rolled back",
        )
        state = fleet_state(tmp_path)
        assert state["tried"] == 2 and state["running"] == 1 and 2 in state["refused"]
        assert "entrance-2" in state["error"]
        assert config.read_text() == v1_text
        beat = wait_for(
            lambda: (
                (b := cloud.last_heartbeat(bridge_id))
                and b.get("config", {}).get("status") == "rolled_back"
                and b
            ),
            timeout=60,
            what="a heartbeat reporting the rollback",
        )
        assert beat["config_source"] == "cloud" and beat["config"]["version"] == 2
        assert "entrance-2" in beat["config"]["error"] and beat["config"]["running"] == 1
        assert cloud.adoption.wanted_version(bridge_id) == 1  # never offered again

        # A document that breaks config check's rules: invalid, nothing written, nothing restarted.
        restarts = len(calls(systemd))
        assert cloud.set_config(bridge_id, {"sensors": [{"id": "x", "colour": "blue"}]}) == 3
        wait_for(
            lambda: fleet_state(tmp_path).get("status") == "invalid",
            timeout=30,
            what="version 3 refused as invalid",
        )
        assert "sensors[0]" in fleet_state(tmp_path)["error"]
        assert config.read_text() == v1_text and len(calls(systemd)) == restarts
        assert fleet_state(tmp_path)["running"] == 1

        # The cloud away: the bridge keeps running version 1.
        running = collector_pid(systemd)
        cloud.set_down(True)
        wait_for(
            lambda: "config" in (fleet_status(tmp_path).get("last_error") or ""),
            timeout=30,
            what="the agent to notice the cloud is away",
        )
        time.sleep(3)
        assert config.read_text() == v1_text and collector_pid(systemd) == running
        assert fleet_state(tmp_path)["running"] == 1
    finally:
        stop_process(agent)
        stop_collector(systemd)


def test_unclaimed_led_card_takes_over_and_reflash_enrolls_anew(
    tmp_path: Path, cloud: SimReceiver
) -> None:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from appliance.config import ConfigWatch
    from appliance.led import PATTERNS, LedService, Light

    config = fleet_only(tmp_path, cloud, cloud.new_enroll_token("test"))
    boot = tmp_path / "boot"
    boot.mkdir()
    env = fake_systemd(tmp_path / "systemd")
    agent = start_agent(config, boot, env)
    try:
        code = wait_claim_code(tmp_path, boot)
        wait_for(lambda: fleet_status(tmp_path).get("claim_code"), what="fleet.json")
        # The LED shows the unclaimed pattern: three short flashes, then a pause.
        led = LedService(ConfigWatch(config))
        led.step()
        assert led.showing == "unclaimed" and code in led.reason
        factory = MockFactory(pin_class=MockPWMPin)
        light = Light.open(led.settings().__class__(backend="gpiozero", pin=21), factory)
        light.show(led.showing)
        time.sleep(3.5)
        light.close()
        flashes = [s.state for s in factory.pin(21).states]
        assert flashes.count(1.0) >= 3 and PATTERNS["unclaimed"].led.startswith("three")

        bridge_id = cloud.claim(code, label="Porto", timezone="Europe/Lisbon")
        wait_for(
            lambda: fleet_status(tmp_path).get("bridge_id") == bridge_id,
            timeout=60,
            what="claimed",
        )
        # A card with a full config: imported at boot as today; the agent leaves it be.
        card = write_config(
            boot / "sensor-bridge.toml",
            {
                "bridge": {"id": "porto-by-hand", "require_time_sync": False},
                "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
                "uplink": {"url": cloud.url, "api_key": "hand-made-bridges-key"},
                "led": {"backend": "none"},
            },
        )
        imported = run_cli("-c", str(config), "config", "import", "--from", str(card))
        assert imported.returncode == 0, imported.stderr
        wait_for(
            lambda: fleet_state(tmp_path).get("source") == "local",
            timeout=30,
            what="config_source local",
        )
        cloud.set_config(bridge_id, {"sensors": []})
        time.sleep(3)  # several check_s: nothing is fetched over the card's file
        assert "porto-by-hand" in config.read_text()
        assert fleet_status(tmp_path)["config_source"] == "local"
        assert fleet_state(tmp_path).get("tried") is None
        # The collector's heartbeat says so (the fleet page: "managed on site").
        facts = adoption_facts(str(tmp_path / "state"), str(config))
        assert facts == {"config_source": "local"}
        assert heartbeat_problem({**heartbeat_body(), **facts}) is None
    finally:
        stop_process(agent)

    # A re-flashed card: no credential, a [fleet]-only config: a new enrollment, flagged.
    for name in ("credential", "claim-code", "state.json"):
        (tmp_path / "state" / "fleet" / name).unlink()
    config = fleet_only(tmp_path, cloud, cloud.new_enroll_token("again"))
    agent = start_agent(config, boot, env)
    try:
        new_code = wait_claim_code(tmp_path, boot)
        assert new_code != code
        wait_for(lambda: len(cloud.adoption.enrollments) == 2, timeout=60, what="re-enrollment")
        fresh = [e for e in cloud.adoption.enrollments.values() if e.bridge_id is None]
        assert len(fresh) == 1 and fresh[0].reflashed_from == bridge_id
    finally:
        stop_process(agent)
