"""The fleet agent's parts alone: the claim code and credential, composing a cloud document into
the config file, and the reference receiver's adoption routes as a bridge meets them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import requests

from appliance.adoption import apply
from appliance.adoption.identity import (
    CLAIM_ALPHABET,
    Identity,
    normalised_code,
    sha256_hex,
)
from appliance.config import ConfigError
from appliance.sim.adoption import ClaimRefused
from appliance.sim.receiver import SimReceiver


def test_credential_and_claim_code_are_made_once_and_kept_private(tmp_path: Path) -> None:
    made = Identity.load_or_make(tmp_path / "fleet")
    assert made.made_now and re.fullmatch(r"sbk_[A-Za-z0-9_-]{43}", made.credential)
    assert re.fullmatch(f"[{CLAIM_ALPHABET}]{{4}}-[{CLAIM_ALPHABET}]{{4}}", made.claim_code)
    assert not set(CLAIM_ALPHABET) & set("01OILU")
    assert (tmp_path / "fleet" / "credential").stat().st_mode & 0o077 == 0
    again = Identity.load_or_make(tmp_path / "fleet")
    assert not again.made_now and again.credential == made.credential
    assert normalised_code(" k7qm-3xpd ") == "K7QM3XPD"


def test_a_document_becomes_a_config_with_the_bridge_s_own_tables(tmp_path: Path) -> None:
    local = {
        "fleet": {"url": "http://127.0.0.1:9", "enroll_token": "sbe_abcdefghij"},
        "paths": {"state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")},
        "bridge": {"require_time_sync": False},
        "led": {"backend": "none"},
    }
    doc = {
        "bridge": {"timezone": "Europe/Lisbon"},
        "sensors": [
            {
                "id": "door-1",
                "url": "http://127.0.0.1:1",
                "username": "admin",
                "password": 'pä"ss\\x',
                "collect": ["line_counts"],
            }
        ],
    }
    credential = tmp_path / "credential"
    credential.write_text("sbk_" + "x1" * 22)
    composed = apply.compose(doc, local, "lisbon-chiado", "http://127.0.0.1:9/", credential)
    text, config = apply.checked_text(composed, tmp_path / "config.toml")
    assert tomllib.loads(text) == composed  # the TOML says exactly what was composed
    assert config.bridge.id == "lisbon-chiado" and config.bridge.timezone == "Europe/Lisbon"
    assert config.uplink.url == "http://127.0.0.1:9/api/bridge/v1/ingest"
    assert config.uplink.api_key == "sbk_" + "x1" * 22 and config.fleet is not None
    assert config.sensors[0].password == 'pä"ss\\x'
    with pytest.raises(ConfigError, match="uplink: made by the bridge"):
        apply.compose({"uplink": {"url": "http://127.0.0.1:2"}}, local, "b", "http://h", credential)
    with pytest.raises(ConfigError, match="sensors\\[0\\].colour: unknown key"):
        apply.checked_text(
            apply.compose(
                {"sensors": [{"id": "x", "colour": "blue"}]}, local, "b", "http://h", credential
            ),
            tmp_path / "config.toml",
        )


def enroll_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "schema": "sensor-bridge/enroll/v1",
        "serial": "10000000abcdef01",
        "machine_id": "0" * 32,
        "macs": ["dc:a6:32:01:02:03"],
        "version": "0.1.0",
        "lan_address": "127.0.0.1",
        "hostname": "sensor-bridge-abcdef",
        "credential_sha256": sha256_hex("sbk_test-credential"),
        "claim_code_sha256": sha256_hex("K7QM3XPD"),
    }
    body.update(changes)
    return body


def test_the_sim_receiver_enrolls_claims_and_serves_config_by_the_contract() -> None:
    with SimReceiver(api_key="hand-key") as rx:
        token = rx.new_enroll_token("t")
        enroll = rx.origin + "/api/bridge/v1/enroll"
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.post(enroll, json=enroll_body(), timeout=5).status_code == 401
        bad = requests.post(enroll, json=enroll_body(macs=["nope"]), headers=auth, timeout=5)
        assert bad.status_code == 400 and "macs" in bad.json()["error"]
        first = requests.post(enroll, json=enroll_body(), headers=auth, timeout=5)
        assert first.status_code == 202 and first.json()["state"] == "unclaimed"
        # The enroll token can do nothing else.
        ingest = requests.post(rx.url, json={}, headers=auth, timeout=5)
        assert ingest.status_code == 401
        for _ in range(4):
            with pytest.raises(ClaimRefused):
                rx.claim("AAAA-AAAA")
        bridge_id = rx.claim("k7qm 3xpd", label="Lisbon Chiado", timezone="Europe/Lisbon")
        with pytest.raises(ClaimRefused):
            rx.claim("K7QM-3XPD")  # a code works once
        claimed = requests.post(enroll, json=enroll_body(), headers=auth, timeout=5)
        assert claimed.status_code == 200
        assert claimed.json() == {
            "state": "claimed",
            "bridge_id": "lisbon-chiado",
            "timezone": "Europe/Lisbon",
            "label": "Lisbon Chiado",
        }
        config = rx.origin + "/api/bridge/v1/config"
        mine = {"Authorization": "Bearer sbk_test-credential", "X-Bridge-Id": bridge_id}
        assert requests.get(config, headers=mine, timeout=5).status_code == 404
        assert requests.get(config, headers=auth, timeout=5).status_code == 401
        rx.set_config(bridge_id, {"sensors": []})
        got = requests.get(config, headers=mine, timeout=5)
        assert got.status_code == 200 and got.headers["ETag"] == '"1"'
        assert got.json()["version"] == 1 and got.json()["bridge_id"] == bridge_id
        same = requests.get(config, headers={**mine, "If-None-Match": '"1"'}, timeout=5)
        assert same.status_code == 304
        # Five wrong codes lock claiming.
        requests.post(
            enroll,
            json=enroll_body(
                credential_sha256=sha256_hex("other"), claim_code_sha256=sha256_hex("ZZZZ2222")
            ),
            headers=auth,
            timeout=5,
        )
        with pytest.raises(ClaimRefused):
            rx.claim("BBBB-BBBB")
        with pytest.raises(ClaimRefused, match="locked"):
            rx.claim("ZZZZ-2222")


def test_the_heartbeat_answer_s_config_version_reaches_the_agent(tmp_path: Path) -> None:
    from appliance.fleet import note_wanted_version, wanted_version

    state_dir = str(tmp_path)
    assert wanted_version(state_dir) is None
    for answer in ({"ok": True}, {"config_version": None}, {"config_version": True}, "x"):
        note_wanted_version(state_dir, answer)
        assert wanted_version(state_dir) is None
    note_wanted_version(state_dir, {"ok": True, "config_version": 7})
    assert wanted_version(state_dir) == 7


def test_a_wiped_state_dir_under_a_cloud_config_enrolls_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cloud's config names a credential that is gone: back to [fleet] alone, a new enrollment."""
    from fleet_helpers import calls, fake_systemd

    from appliance.adoption.agent import FleetAgent

    for name, value in fake_systemd(tmp_path / "systemd").items():
        monkeypatch.setenv(name, value)
    with SimReceiver(api_key="hand-key") as rx:
        token = tmp_path / "token"
        token.write_text(rx.new_enroll_token())
        local = {
            "fleet": {"url": rx.origin, "enroll_token_file": str(token)},
            "paths": {"state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")},
            "bridge": {"require_time_sync": False},
            "health": {"listen": ""},
            "led": {"backend": "none"},
        }
        credential = tmp_path / "s" / "fleet" / "credential"
        composed = apply.compose({"sensors": []}, local, "old-id", rx.origin, credential)
        config = tmp_path / "config.toml"
        config.write_text(apply.to_toml(composed))
        monkeypatch.setenv("SENSOR_BRIDGE_CONFIG", str(config))
        agent = FleetAgent(config, None)
        agent.start()
        agent.step()  # the config is unreadable (its key file is gone): back to [fleet] alone
        agent.step()  # [fleet] alone: a new credential, a new enrollment
        raw = tomllib.loads(config.read_text())
        assert (
            "uplink" not in raw and "id" not in raw["bridge"] and raw["fleet"]["url"] == rx.origin
        )
        assert (tmp_path / "config.last-good.toml").exists()
        assert ["restart", "sensor-bridge.service", "sensor-bridge-relay.service"] in calls(
            tmp_path / "systemd"
        )
        assert len(rx.adoption.enrollments) == 1
        agent.shutdown()
