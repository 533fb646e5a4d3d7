"""A config copied from the example is checked for what a person forgot, and heartbeats by default (issue 22).

``config check`` (and so the boot import) refuses every placeholder left from
image/sensor-bridge.example.toml, naming its key, and an ``api_key`` that is
obviously not a key; a bridge whose ``heartbeat_url`` is left out heartbeats
to its cloud anyway (the uplink's origin, the contract's path), and ``""``
still turns heartbeats off.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import REPO, base_tables, run_cli, wait_for, write_config

from appliance.collector import Collector
from appliance.config import ConfigError, load_config, parse_config
from appliance.sim.receiver import SimReceiver

EXAMPLE = REPO / "image" / "sensor-bridge.example.toml"
REAL_KEY = "sbk_Qm9uam91ciBsZXMgYnJpZGdlcyEgdW4ga2V5IHJlYWwu"
NOT_A_KEY = "`cloud/bin/add-bridge` prints the bridge's key"


def filled_in(text: str) -> str:
    """The example with what a person must fill in (the cloud's URL and key, the camera's password).

    Config data only: the camera's address in the example is never contacted."""
    return (
        text.replace("https://example.vercel.app/", "https://counts.store-chain.test/")
        .replace('api_key = "CHANGE-ME"', f'api_key = "{REAL_KEY}"')
        .replace('password = "CHANGE-ME"                # CHANGE', 'password = "cam-pw-7"')
    )


def test_the_untouched_example_is_refused_naming_each_placeholder(tmp_path: Path) -> None:
    done = run_cli("-c", str(EXAMPLE), "config", "check")
    assert done.returncode == 2, done.stderr
    problems = [line.strip()[2:] for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert sorted(problems) == sorted(
        [
            "uplink.url: 'https://example.vercel.app/api/bridge/v1/ingest' still points at the "
            "example's host example.vercel.app; put your own address here",
            "uplink.api_key: still the example's placeholder CHANGE-ME; put the real value here",
            "sensors[0].password: still the example's placeholder CHANGE-ME; put the real value here",
        ]
    )


def test_the_example_filled_in_is_accepted_and_heartbeats_to_its_cloud(tmp_path: Path) -> None:
    config = tmp_path / "sensor-bridge.toml"
    config.write_text(filled_in(EXAMPLE.read_text()))
    done = run_cli("-c", str(config), "config", "check")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["uplink"]["heartbeat_url"] == (
        "https://counts.store-chain.test/api/bridge/v1/heartbeat"
    )
    assert REAL_KEY not in done.stdout


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ('[mqtt]\nusername = "sensor-bridge"\npassword = "CHANGE-ME"\n', "mqtt.password"),
        ('[push]\npassword = "change_me"\n', "push.password"),
        ('[alerts]\nping_url = "https://hc-ping.com/CHANGE-ME"\n', "alerts.ping_url"),
    ],
)
def test_a_placeholder_in_an_uncommented_block_is_refused_by_key(
    tmp_path: Path, block: str, key: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(filled_in(EXAMPLE.read_text()) + "\n" + block)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert f"{key}: still the example's placeholder CHANGE-ME" in str(refused.value)


def test_a_password_file_holding_the_placeholder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("CHANGE-ME\n")
    tables = base_tables(tmp_path, "http://127.0.0.1:9/api/bridge/v1/ingest")
    tables["uplink"] = {"url": "http://127.0.0.1:9/api/bridge/v1/ingest", "api_key_file": "key.txt"}
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path / "config.toml", tables))
    assert "uplink.api_key_file:" in str(refused.value) and "placeholder" in str(refused.value)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("k", "1 characters is too short for a key"),
        ("abc1234", "7 characters is too short for a key"),
        ("the key from the cloud app", "holds a space: a key is one word"),
        ("sbk_...", "7 characters is too short for a key"),
        ("sbk_Qm9uam91...", "a placeholder, not a key"),
        ("<your key here>", "holds a space: a key is one word"),
        ("<bridge-key>", "a placeholder, not a key"),
        ("your-api-key", "a placeholder, not a key"),
        ("xxxxxxxxxxxx", "a placeholder, not a key"),
        ("paste_the_PLACEHOLDER", "a placeholder, not a key"),
    ],
)
def test_an_api_key_that_is_obviously_not_a_key_is_refused_unquoted(
    tmp_path: Path, key: str, why: str
) -> None:
    tables = base_tables(tmp_path, "http://127.0.0.1:9/api/bridge/v1/ingest", api_key=key)
    with pytest.raises(ConfigError) as refused:
        parse_config(tables)
    assert f"uplink.api_key: {why}; {NOT_A_KEY}" in refused.value.problems[0]
    if len(key) > 3:
        assert key not in str(refused.value), "a key, even a wrong one, is never shown"


@pytest.mark.parametrize("key", [REAL_KEY, "test-key", "uplink-secret-1", "0f3c9a1e77b2"])
def test_a_key_shaped_api_key_is_accepted(tmp_path: Path, key: str) -> None:
    tables = base_tables(tmp_path, "http://127.0.0.1:9/api/bridge/v1/ingest", api_key=key)
    assert parse_config(tables).uplink.api_key == key


@pytest.mark.parametrize(
    ("url", "written", "heartbeats_to"),
    [
        (
            "https://counts.store-chain.test/api/bridge/v1/ingest",
            None,
            "https://counts.store-chain.test/api/bridge/v1/heartbeat",
        ),
        (
            "http://127.0.0.1:8443/some/proxy/ingest?tenant=7",
            None,
            "http://127.0.0.1:8443/api/bridge/v1/heartbeat",
        ),
        ("https://counts.store-chain.test/api/bridge/v1/ingest", "", ""),
        (
            "https://counts.store-chain.test/api/bridge/v1/ingest",
            "https://beats.store-chain.test/hb",
            "https://beats.store-chain.test/hb",
        ),
    ],
)
def test_heartbeats_go_to_the_uplinks_origin_unless_written(
    tmp_path: Path, url: str, written: str | None, heartbeats_to: str
) -> None:
    tables = base_tables(tmp_path, url)
    if written is not None:
        tables["uplink"]["heartbeat_url"] = written
    assert parse_config(tables).uplink.heartbeat_url == heartbeats_to


def test_a_bridge_without_heartbeat_url_heartbeats_to_its_cloud(tmp_path: Path) -> None:
    """The fleet page hears from a bridge configured from the example: no heartbeat_url needed."""
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as receiver:
        tables = base_tables(tmp_path, receiver.url)
        assert "heartbeat_url" not in tables["uplink"]
        collector = Collector(load_config(write_config(tmp_path / "config.toml", tables)))
        runner = threading.Thread(target=collector.run, daemon=True)
        runner.start()
        try:
            beat = wait_for(
                lambda: receiver.last_heartbeat("store-test"), timeout=30, what="a heartbeat"
            )
            assert beat["schema"] == "sensor-bridge/heartbeat/v1"
        finally:
            collector.stop_event.set()
            runner.join(timeout=20)
        assert not runner.is_alive()
