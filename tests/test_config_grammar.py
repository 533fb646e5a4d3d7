"""Config values are data (issue 19): every string that reaches a file another program parses has a grammar.

A config file is written by anyone holding the SD card, and soon by the cloud.
Its strings become lines of mosquitto's ACL and password file and of
systemd-networkd's units, so ``config check`` (and with it the boot import)
refuses, naming the key and the rule: a control character anywhere in any
string (values, list items, keys' names, ``*_file`` secrets); an MQTT username
or topic filter outside MQTT's rules or the charset; a WireGuard key that is
not 32 bytes of base64; an endpoint that is not host:port; an IPv6 scope id;
a tunnel network outside the admin ranges; a bridge id that is not a short
plain name. Every address below is config data, never contacted.
"""

from __future__ import annotations

import base64
import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from appliance.boot_config import ERROR_NAME, import_config
from appliance.config import ConfigError, load_config

KEY = base64.b64encode(bytes(range(32))).decode()  # a well-formed WireGuard key
RANGES = "(10/8, 172.16/12, 192.168/16, 100.64/10, fd00::/8)"
CONTROL = "a value is printable text without line breaks, tabs or other control characters"

STORE: dict[str, Any] = {
    "bridge": {"id": "store-7", "timezone": "Europe/Lisbon"},
    "uplink": {
        "url": "https://ingest.store.test/api/bridge/v1/ingest",
        "api_key": "sb_4f9a2c7e1d3b8a6f0e5c9d2b7a1f4e8c",
    },
    "sensors": [{"id": "entrance-1", "url": "http://127.0.0.1:9", "password": "camera-pw"}],
    "mqtt": {
        "password": "relay-pw",
        "topics": ["milesight/#", "application/+/device/+/event/up"],
        "devices": [{"sensor_id": "door", "topic": "milesight/+/door"}],
    },
    # Private-range addresses here are config data the checks read; nothing is ever sent to them.
    "remote": {
        "address": "10.66.0.42/32",
        "peer_public_key": KEY,
        "endpoint": "hub.store.test:51820",
        "allowed_ips": ["10.66.0.1/32"],
    },
}


def toml(tables: dict[str, Any]) -> str:
    """TOML for ``tables``; strings escaped as JSON does (TOML reads \\n, \\uXXXX the same)."""

    def value(v: Any) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    def body(path: str, table: dict[str, Any], header: str) -> list[str]:
        lines = [header]
        nested: list[str] = []
        for key, v in table.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    nested += body(f"{path}.{key}", item, f"[[{path}.{key}]]")
            else:
                lines.append(f"{json.dumps(key)} = {value(v)}")
        return [*lines, "", *nested]

    lines: list[str] = []
    for name, table in tables.items():
        for item in table if isinstance(table, list) else [table]:
            header = f"[[{name}]]" if isinstance(table, list) else f"[{name}]"
            lines += body(name, item, header)
    return "\n".join(lines) + "\n"


def with_value(path: str, new: Any) -> dict[str, Any]:
    """STORE with the value at ``path`` (``remote.allowed_ips``, ``sensors.0.password``) replaced."""
    tables = copy.deepcopy(STORE)
    *parents, last = path.split(".")
    node: Any = tables
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = new
    return tables


def problems(tables: dict[str, Any], tmp_path: Path) -> list[str]:
    path = tmp_path / "config.toml"
    path.write_text(toml(tables))
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def test_the_store_config_itself_is_accepted(tmp_path: Path) -> None:
    assert problems(STORE, tmp_path) == []


HOSTILE = [
    # issue 19 item 2: a newline in a topic filter became a line of mosquitto's ACL
    (
        "mqtt.topics",
        ["milesight/#\npattern readwrite #"],
        f"mqtt.topics[0]: holds a control character (U+000A at character 12); {CONTROL}",
    ),
    ("mqtt.username", "relay\ntopic readwrite #", "mqtt.username: holds a control character"),
    ("mqtt.username", "relay user", "mqtt.username: expected 1 to 64 letters, digits, '.', '_'"),
    ("mqtt.username", "", "mqtt.username: expected 1 to 64 letters"),
    ("mqtt.topics", ["milesight/#/more"], "# must be a whole level and the last one"),
    ("mqtt.topics", ["milesight/cam#"], "# must be a whole level and the last one"),
    (
        "mqtt.topics",
        ["milesight/ca+m/up"],
        "mqtt.topics[0]: 'milesight/ca+m/up': + must be a whole",
    ),
    (
        "mqtt.topics",
        ["milesight/#", "a\u0000b"],
        "mqtt.topics[1]: holds a control character (U+0000",
    ),
    ("mqtt.topics", ["milesight/a b"], "has a character outside letters, digits and . _ - / + #"),
    ("mqtt.topics", [""], "mqtt.topics[0]: empty"),
    ("mqtt.topics", ["a/" * 32768], "mqtt.topics[0]: 65536 bytes; MQTT allows at most 65535"),
    ("mqtt.client_id", "relay #1", "mqtt.client_id: expected 1 to 64 letters, digits"),
    ("mqtt.devices.0.topic", "milesight/#/door", "mqtt.devices[0].topic: 'milesight/#/door': #"),
    # issue 19 item 3: networkd syntax through [remote]
    (
        "remote.endpoint",
        "hub.store.test:51820\n[WireGuardPeer]",
        "remote.endpoint: holds a control",
    ),
    ("remote.endpoint", "evil host:51820", "remote.endpoint: host: 'evil host' is not a DNS name"),
    ("remote.endpoint", "hub_1.store.test:51820", "is not a DNS name (RFC 1123"),
    ("remote.endpoint", "hub.store.test:0", "remote.endpoint: expected the hub's host:port"),
    ("remote.endpoint", "hub.store.test:65536", "(port 1-65535, IPv6 in brackets)"),
    ("remote.endpoint", "fd00::1:51820", "is not a DNS name (RFC 1123"),
    ("remote.endpoint", "[fd00::1%wg0]:51820", "remote.endpoint: host: an IPv6 scope id"),
    ("remote.endpoint", "300.1.2.3:51820", "remote.endpoint: host: 300.1.2.3 is not an IPv4"),
    (
        "remote.address",
        "fd00::42%wg0/128",
        "remote.address: 'fd00::42%wg0/128' has an IPv6 scope id",
    ),
    ("remote.address", "fd00::42%\n[Route]/128", "remote.address: holds a control character"),
    (
        "remote.allowed_ips",
        ["0.0.0.0/1", "128.0.0.0/1"],
        f"remote.allowed_ips[0]: 0.0.0.0/1 is outside the private and admin ranges {RANGES}",
    ),
    ("remote.allowed_ips", ["10.66.0.1/32", "128.0.0.0/1"], "remote.allowed_ips[1]: 128.0.0.0/1"),
    ("remote.allowed_ips", ["10.0.0.0/7"], "remote.allowed_ips[0]: 10.0.0.0/7 is outside"),
    ("remote.allowed_ips", ["8.8.8.0/24"], "remote.allowed_ips[0]: 8.8.8.0/24 is outside"),
    ("remote.allowed_ips", ["::/0"], "remote.allowed_ips: ::/0 would send all traffic"),
    ("remote.allowed_ips", ["fe80::/10"], "remote.allowed_ips[0]: fe80::/10 is outside"),
    ("remote.allowed_ips", ["fd00::1%wg0/128"], "remote.allowed_ips[0]: 'fd00::1%wg0/128' has an"),
    ("remote.peer_public_key", base64.b64encode(bytes(31)).decode(), "base64 of exactly 32 bytes"),
    ("remote.peer_public_key", base64.b64encode(bytes(33)).decode(), "base64 of exactly 32 bytes"),
    ("remote.peer_public_key", KEY[:-1] + "\n", "remote.peer_public_key: holds a control"),
    # the bridge's id: a short plain name
    ("bridge.id", "store 7", "bridge.id: expected 1 to 64 letters, digits, '.', '_' or '-'"),
    ("bridge.id", "s" * 65, "bridge.id: expected 1 to 64 letters"),
    ("bridge.id", "", "bridge.id: expected 1 to 64 letters"),
    ("bridge.id", "store\r7", "bridge.id: holds a control character (U+000D"),
    # one rule for every string: other keys, secrets, list items, C1 and Unicode separators
    ("sensors.0.password", "pw\u0085x", "sensors[0].password: holds a control character (U+0085"),
    ("uplink.api_key", "sb_4f9a2c7e1d3b8a6f\u2028x", "uplink.api_key: holds a control character"),
    ("sensors.0.username", "ad\x7fmin", "sensors[0].username: holds a control character (U+007F"),
    ("sensors.0.collect", ["line_counts\t"], "sensors[0].collect[0]: holds a control character"),
    (
        "bridge.timezone",
        "Europe/Lisbon\u2029",
        "bridge.timezone: holds a control character (U+2029",
    ),
]


@pytest.mark.parametrize(("path", "value", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_value_is_refused_naming_its_key_and_the_rule(
    path: str, value: Any, expected: str, tmp_path: Path
) -> None:
    found = problems(with_value(path, value), tmp_path)
    assert any(expected in p for p in found), found
    if isinstance(value, str) and "pw" in value:
        assert not any(value in p for p in found), "a secret is never quoted back"


def test_each_value_has_one_problem_for_its_control_character(tmp_path: Path) -> None:
    """A newline in a topic is said once, not again as a bad charset."""
    found = problems(with_value("mqtt.topics", ["milesight/#\nx"]), tmp_path)
    assert [p for p in found if p.startswith("mqtt.topics")] == [
        f"mqtt.topics[0]: holds a control character (U+000A at character 12); {CONTROL}"
    ]


def test_a_keys_name_with_a_control_character_is_refused(tmp_path: Path) -> None:
    tables = with_value("mqtt.topics", ["milesight/#"])
    tables["mqtt"]["pattern readwrite #\nuser"] = "x"
    found = problems(tables, tmp_path)
    assert any(p.startswith("mqtt: a key's name holds a control character (U+000A") for p in found)


def test_a_secret_file_with_a_line_break_inside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("sb_4f9a2c7e1d3b8a6f\n[Route]\n")  # the last newline is fine
    tables = copy.deepcopy(STORE)
    del tables["uplink"]["api_key"]
    tables["uplink"]["api_key_file"] = "key.txt"
    found = problems(tables, tmp_path)
    assert any(
        p.startswith("uplink.api_key_file: the text of") and "holds a control character" in p
        for p in found
    ), found


ACCEPTED = [
    ("remote.endpoint", "[2001:db8::1]:51820"),
    ("remote.endpoint", "192.0.2.1:51820"),
    ("remote.endpoint", "hub-1.store.test:1"),
    ("remote.address", "fd00:66::42/128"),
    ("remote.allowed_ips", ["10.66.0.0/24", "172.16.0.0/12", "192.168.7.0/24"]),
    ("remote.allowed_ips", ["100.64.0.1/32", "fd00:66::/64", "10.0.0.0/8"]),
    ("mqtt.topics", ["#", "+/+/up", "milesight/#", "v3/app_1.x-y/devices/+/up"]),
    ("mqtt.username", "relay.user_1-a"),
    ("bridge.id", "Store_12.lisbon-3"),
]


@pytest.mark.parametrize(("path", "value"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_the_grammar_takes_what_a_store_writes(path: str, value: Any, tmp_path: Path) -> None:
    assert problems(with_value(path, value), tmp_path) == []


def test_config_check_refuses_the_issues_hostile_card_naming_each_key(tmp_path: Path) -> None:
    tables = with_value("mqtt.topics", ["milesight/#\npattern readwrite #"])
    tables["remote"]["allowed_ips"] = ["0.0.0.0/1", "128.0.0.0/1"]
    tables["remote"]["endpoint"] = "hub.store.test:51820\n[WireGuardPeer]\nAllowedIPs=0.0.0.0/0"
    path = tmp_path / "config.toml"
    path.write_text(toml(tables))

    done = run_cli("-c", str(path), "config", "check")

    assert done.returncode == 2, done.stdout
    for line in (
        "mqtt.topics[0]: holds a control character (U+000A at character 12)",
        "remote.endpoint: holds a control character (U+000A at character 21)",
        f"remote.allowed_ips[0]: 0.0.0.0/1 is outside the private and admin ranges {RANGES}",
        f"remote.allowed_ips[1]: 128.0.0.0/1 is outside the private and admin ranges {RANGES}",
    ):
        assert f"  - {line}" in done.stderr, done.stderr


def test_the_boot_import_refuses_a_hostile_card_and_keeps_the_installed_config(
    tmp_path: Path,
) -> None:
    boot, etc = tmp_path / "boot", tmp_path / "etc"
    boot.mkdir()
    source, target = boot / "sensor-bridge.toml", etc / "config.toml"
    source.write_text(toml(STORE))
    assert import_config(source, target, owner=None).outcome == "installed"
    installed = target.read_text()

    source.write_text(toml(with_value("mqtt.username", "relay\ntopic readwrite #")))
    result = import_config(source, target, owner=None)

    assert result.outcome == "invalid"
    assert target.read_text() == installed
    assert "mqtt.username: holds a control character" in (boot / ERROR_NAME).read_text()


def test_the_installed_config_is_readable_by_the_service_group_and_writable_by_root_only(
    tmp_path: Path,
) -> None:
    source = tmp_path / "sensor-bridge.toml"
    source.write_text(toml(STORE))
    target = tmp_path / "etc" / "config.toml"

    import_config(source, target, owner=None)

    assert stat.S_IMODE(target.stat().st_mode) == 0o640
