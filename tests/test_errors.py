"""One exception root: every error the bridge raises on purpose is a BridgeError, and a bad
message (a push, a LoRaWAN frame, envelope, decoded uplink or route) a MessageError caught once."""

from __future__ import annotations

import ast
import base64
import importlib
import json
import sqlite3
from datetime import UTC, datetime

import pytest
from conftest import REPO

from appliance.config import MqttDevice
from appliance.errors import BridgeError, MessageError
from appliance.push.parser import PushParser

# Not the bridge's own refusals: stand-ins for ssl's names when OpenSSL is absent (push/mqtt_door.py),
# the reference receiver's (a simulator of the cloud, not part of the bridge), and the entry point.
NOT_OURS = {
    "appliance.push.mqtt_door",
    "appliance.sim.receiver",
    "appliance.sim.http_handler",
    "appliance.sim.adoption",
    "appliance.__main__",
}


def exception_classes() -> list[type[BaseException]]:
    """Every public exception class defined in appliance/, found by reading the source."""
    found = []
    for path in sorted((REPO / "appliance").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        if module in NOT_OURS:
            continue
        names = [
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
        ]
        loaded = importlib.import_module(module)
        for name in names:
            cls = getattr(loaded, name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return found


def test_every_exception_of_the_bridge_has_one_root() -> None:
    classes = exception_classes()
    assert len(classes) >= 11, classes
    assert [c.__qualname__ for c in classes if not issubclass(c, BridgeError)] == []


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("appliance.sources.lorawan.frame", "FrameError", ValueError),
        ("appliance.sources.lorawan.envelope", "EnvelopeError", ValueError),
        ("appliance.sources.lorawan.route", "RouteError", ValueError),
        ("appliance.sources.lorawan.readings", "UplinkError", ValueError),
        ("appliance.push.message", "BadMessage", ValueError),
    ],
)
def test_messages_that_cannot_become_readings_are_message_errors(
    module: str, name: str, builtin: type
) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, MessageError) and issubclass(cls, builtin)


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("appliance.config_keys", "ConfigError", ValueError),
        ("appliance.update", "UpdateError", RuntimeError),
        ("appliance.outbox", "OutboxFull", sqlite3.OperationalError),
        ("appliance.records", "NonexistentLocalTime", ValueError),
    ],
)
def test_each_error_is_still_caught_as_what_it_was(module: str, name: str, builtin: type) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, BridgeError) and issubclass(cls, builtin)
    assert not issubclass(cls, MessageError)


def test_a_bad_lorawan_frame_is_named_once_in_its_dead_letter() -> None:
    """The frame's problem reaches the dead letter with the route's context, wrapped once."""
    eui = "24e124136b502217"
    uplink = {
        "devEUI": eui,
        "time": "2025-07-01T11:59:58Z",
        "fPort": 85,
        "data": base64.b64encode(bytes.fromhex("03D24800")).decode(),  # VS133: cut short
    }
    parser = PushParser([MqttDevice("door", dev_eui=eui, model="vs133")], "UTC")
    parsed = parser.parse(
        json.dumps(uplink).encode(),
        source="mqtt",
        topic="milesight/ug67/uplink",
        origin="milesight/ug67/uplink",
        received_at=datetime(2025, 7, 1, 12, tzinfo=UTC),
    )
    assert parsed.records == [] and len(parsed.dead) == 1
    assert parsed.dead[0].reason == (
        f"vs133 frame 03d24800 from {eui}: "
        "byte 0: line 1 total in needs 4 data bytes, the frame has 2 left"
    )
