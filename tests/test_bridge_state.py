"""One bridge state: /health, the heartbeat, the LED and `status` say the same thing for the same reasons.

In-process: a collector (not running its loop), the LED service's look at the
bridge and `status`'s report, over the same status files and the same config.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import base_tables, closed_port_url, write_config

from appliance import boot_config
from appliance.bridge_state import counted_service
from appliance.collector import Collector
from appliance.config import ConfigWatch, load_config
from appliance.console import gather_status
from appliance.led import LedService
from appliance.status import (
    MAINTENANCE,
    STATES,
    counted_by_the_bridge,
    doctor_passes,
    effective_state,
    health_answers_200,
    service_state,
    status_succeeds,
    update_gate_accepts,
    write_status,
)


@pytest.fixture
def bridge(tmp_path: Path):
    path = write_config(tmp_path / "config.toml", base_tables(tmp_path, closed_port_url()))
    config = load_config(path)
    write_status(config.paths.run_dir, "watchdog", "ok", reason="stand-in watchdog")
    collector = Collector(config)
    led = LedService(ConfigWatch(path))
    yield config, collector, led
    collector.outbox.close()


def views(config, collector: Collector, led: LedService) -> dict[str, tuple[str, str]]:
    """(state, reason) as /health, the heartbeat, the LED and `status` show it now."""
    snap = collector.write_status()
    code, health = collector.health()
    assert code == (200 if health["status"] in ("ok", "degraded", "starting") else 503), (
        code,
        health,
    )
    led.step()
    report = gather_status(config)
    return {
        "/health": (health["status"], health["reason"]),
        "heartbeat": (collector.heartbeat_body(snap)["state"], ""),
        "led": (led.showing, led.reason),
        "status": (report["state"], report.get("reason", "")),
    }


def test_a_rejected_boot_config_is_an_error_everywhere_not_only_on_the_led(
    bridge, tmp_path, monkeypatch
):
    config, collector, led = bridge
    card = tmp_path / "boot"
    card.mkdir()
    monkeypatch.setattr(boot_config, "BOOT_FILES", (str(card / "sensor-bridge.toml"),))
    (card / "sensor-bridge-error.txt").write_text(
        "sensor-bridge could not use sensor-bridge.toml\n"
    )

    seen = views(config, collector, led)
    assert {state for state, _ in seen.values()} == {"error"}, seen
    for where, (_, reason) in seen.items():
        assert where == "heartbeat" or "the new config was rejected" in reason, (where, reason)
    assert collector.health()[0] == 503

    (card / "sensor-bridge-error.txt").unlink()  # the person fixed the file on the card
    seen = views(config, collector, led)
    assert len({state for state, _ in seen.values()}) == 1 and seen["led"][0] != "error", seen


def test_outbox_damage_is_an_error_everywhere_until_acknowledged(bridge):
    config, collector, led = bridge
    collector.outbox.notes.add("corrupt", "outbox was corrupt (test); moved aside, started empty")
    seen = views(config, collector, led)
    assert {state for state, _ in seen.values()} == {"error"}, seen
    assert all(
        "was corrupt" in reason for where, (_, reason) in seen.items() if where != "heartbeat"
    ), seen


def test_health_answers_200_starting_before_the_first_status(bridge):
    """docs/ingest-contract.md: 200 while starting (it answered 503 before its first status write)."""
    _, collector, _ = bridge
    code, body = collector.health()
    assert (code, body["status"]) == (200, "starting")
    assert {"status", "uptime", "last_collection"} <= body.keys()


# ---------------------------------------------------------------- one reading of a state


ALL_STATES = (*STATES, MAINTENANCE)


@pytest.mark.parametrize(
    ("reader", "yes"),
    [
        (health_answers_200, {"ok", "degraded", "starting"}),
        (update_gate_accepts, {"ok", "degraded"}),
        (status_succeeds, {"ok", "degraded", "starting", "maintenance"}),
        (doctor_passes, {"ok", "starting", "maintenance"}),
    ],
)
def test_each_reader_of_a_state_says_yes_to_its_own_states(reader, yes) -> None:
    """What /health calls 200, what the update gate accepts, what `status` exits 0 for and
    what `doctor` passes: each named once, each a different set on purpose."""
    assert {state for state in ALL_STATES if reader(state)} == yes
    assert not reader("bogus")


def test_the_bridge_counts_a_service_still_in_maintenance_as_ok() -> None:
    """The LED and /health show the bridge's state: a service file still saying maintenance
    after maintenance ended counts as ok there, while `doctor` and the update gate see it as is."""
    assert counted_by_the_bridge(MAINTENANCE) == "ok"
    assert counted_by_the_bridge("bogus") == "error"
    assert all(counted_by_the_bridge(state) == state for state in STATES)
    now = time.time()
    body = {"state": MAINTENANCE, "written_at": now}
    assert service_state(body, now).state == MAINTENANCE == effective_state(body, now=now)
    counted = counted_service(body, now, in_grace=False)
    assert (counted.state, counted.reason) == ("ok", "ok")


@pytest.mark.parametrize(
    ("body", "in_grace", "state", "reason"),
    [
        (None, True, "starting", "not started yet"),
        (None, False, "error", "not running (no status file)"),
        ({"state": "ok", "written_at": 0.0}, False, "error", "status file stale"),
        ({"state": "ok"}, False, "error", "status file stale"),
        (
            {"state": "sleepy", "written_at": "now"},
            False,
            "error",
            "unknown state 'sleepy' in its status file",
        ),
        (
            {"state": "degraded", "reason": "sensor cam-1 failing", "written_at": "now"},
            False,
            "degraded",
            "sensor cam-1 failing",
        ),
    ],
)
def test_a_status_file_is_read_one_way_by_every_reader(body, in_grace, state, reason) -> None:
    now = time.time()
    if body and body.get("written_at") == "now":
        body = {**body, "written_at": now}
    seen = service_state(body, now, in_grace)
    assert (seen.state, seen.reason) == (state, reason)
    if not in_grace:
        assert effective_state(body, now=now) == state
    assert counted_service(body, now, in_grace).state == state
