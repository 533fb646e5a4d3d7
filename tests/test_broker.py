"""`sensor-bridge mqtt setup|add-device|remove-device|list` against a real mosquitto.

The commands are run as a person (or provision.sh) runs them; what matters is
what mosquitto then does: who may connect, with which password, and that a
second run of any command changes nothing.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import free_port, wait_for, write_config
from mqtt_helpers import (
    RELAY_PASSWORD,
    Device,
    Login,
    Mosquitto,
    OutboxReader,
    RelayProcess,
    broker,  # noqa: F401 - the fixture
    mosquitto_pub,
    needs_mosquitto,
    relay_tables,
)

from appliance.broker_files import Broker, BrokerError, password_matches
from appliance.config import MqttConfig

pytestmark = needs_mosquitto
REPORT = json.dumps(
    {"device_info": {"device_sn": "SN1"}, "time_info": {"time": 1736496000}, "current_total": 1}
)


def accepted(login, password: str | None = None) -> bool:
    return mosquitto_pub(login, REPORT, password=password).returncode == 0


def eventually(login, ok: bool, password: str | None = None) -> None:
    """mosquitto applies a reload (SIGHUP) a moment after the command returns."""
    wait_for(
        lambda: accepted(login, password) == ok,
        10,
        f"{login.name} to be {'accepted' if ok else 'refused'}",
    )


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under the broker dir: its text and mtime (a no-op run must touch nothing)."""
    return {
        str(p.relative_to(root)): (p.read_text(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix not in (".db", ".log", ".pid") and p.name != ".lock"
    }


def test_setup_writes_what_the_config_says_and_a_second_run_changes_nothing(tmp_path):
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        relay_tables(tmp_path, port, topics=["milesight/#", "vs133/#"], username="relay"),
    )
    server = Mosquitto(tmp_path / "mosquitto", config, port)
    first = server.cli("setup", "--bind", "127.0.0.1")
    assert "wrote" in first.stdout
    before = snapshot(server.root)

    conf = (server.root / "conf.d" / "sensor-bridge.conf").read_text()
    for line in (
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        "persistence true",
        f"password_file {server.root}/sensor-bridge/passwd",
        f"acl_file {server.root}/sensor-bridge/acl",
        "max_queued_messages 200000",
    ):
        assert line in conf.splitlines(), line
    acl = (server.root / "sensor-bridge" / "acl").read_text()
    assert "user relay\ntopic read milesight/#\ntopic read vs133/#\n" in acl
    user, hashed = (server.root / "sensor-bridge" / "passwd").read_text().strip().split(":", 1)
    assert user == "relay" and password_matches(hashed, "relay-test-password")
    for name in ("passwd", "acl"):
        assert stat.S_IMODE((server.root / "sensor-bridge" / name).stat().st_mode) == 0o640

    again = server.cli("setup")  # no --bind: the stored one is kept
    assert "up to date" in again.stdout
    assert snapshot(server.root) == before


def test_added_device_publishes_with_what_was_printed_and_not_after_removal(broker):  # noqa: F811
    out = broker.cli("add-device", "entrance-1").stdout
    for label in (
        "Broker address:    127.0.0.1",
        f"Broker port:       {broker.port}",
        "Client ID:         entrance-1",
        "Username:          entrance-1",
        "Topic:             milesight/entrance-1",
        "Password:",
    ):
        assert label in out, label
    assert "reloaded mosquitto" in out  # the running broker knows the device at once
    login = broker.add_device(
        "entrance-1"
    )  # a second time: idempotent, the password is not shown again
    assert login.password.startswith("(unchanged")
    login.password = [line.split()[-1] for line in out.splitlines() if "Password:" in line][0]

    eventually(login, True)
    listed = broker.cli("list").stdout
    assert "entrance-1" in listed and "milesight/entrance-1" in listed

    removed = broker.cli("remove-device", "entrance-1").stdout
    assert "removed device entrance-1" in removed and "reloaded mosquitto" in removed
    eventually(login, False)
    assert "not authori" in mosquitto_pub(login, REPORT).stderr.lower()
    assert "nothing to remove" in broker.cli("remove-device", "entrance-1").stdout
    assert "no devices" in broker.cli("list").stdout


def test_new_password_replaces_the_old_one(broker):  # noqa: F811
    old = broker.add_device("checkout")
    new = broker.add_device("checkout", "--new-password")
    assert new.password != old.password and len(new.password) == 20
    eventually(old, False)
    assert accepted(new)


def test_bad_device_names_are_refused_with_the_reason(broker):  # noqa: F811
    for name, why in (
        ("../etc", "device name"),
        ("two words", "device name"),
        ("sensor-bridge", "relay's own user"),
    ):
        done = broker.cli("add-device", name, check=False)
        assert done.returncode == 1 and why in done.stderr, (name, done.stderr)


def test_relay_uses_the_generated_password_when_the_config_sets_none(tmp_path):
    tables = relay_tables(tmp_path, None)
    port = free_port()
    tables["mqtt"] = {"host": "127.0.0.1", "port": port}  # no password: setup makes one
    config = write_config(tmp_path / "config.toml", tables)
    server = Mosquitto(tmp_path / "mosquitto", config, port)
    assert "relay.secret" in server.cli("setup", "--bind", "127.0.0.1").stdout
    secret = server.root / "sensor-bridge" / "relay.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640 and len(secret.read_text().strip()) == 20
    assert "up to date" in server.cli("setup").stdout  # the secret is made once
    server.start()
    login = server.add_device("entrance")
    relay = RelayProcess(
        config,
        tmp_path / "run",
        tmp_path / "relay.log",
        env={"SENSOR_BRIDGE_BROKER_DIR": str(server.root)},
    ).start()
    try:
        relay.wait_connected()
        eventually(login, True)
        box = OutboxReader(tmp_path / "state" / "outbox.db")
        wait_for(lambda: box.count() == 1, 20, "the device's reading")
        assert relay.terminate() == 0
    finally:
        relay.cleanup()
        server.stop()


def test_setup_without_a_config_makes_no_password(tmp_path):
    """An image being built has no config yet: a password made then would be on every SD card."""
    server = Mosquitto(tmp_path / "mosquitto", tmp_path / "absent.toml", 1883)
    out = server.cli("setup").stdout
    assert "no config at" in out
    assert "listener 1883\n" in (server.root / "conf.d" / "sensor-bridge.conf").read_text()
    assert not (server.root / "sensor-bridge" / "relay.secret").exists()
    assert (server.root / "sensor-bridge" / "passwd").read_text() == ""


def test_no_broker_file_is_ever_readable_by_others_even_under_a_loose_umask(tmp_path, monkeypatch):
    """relay.secret (and passwd, acl) get their modes before they appear under their names:
    with umask 0 a file written first and chmod-ed after the rename is world-readable for a moment."""
    at_rename: dict[str, int] = {}
    real_replace = os.replace

    def watching_replace(src, dst, *args, **kwargs):
        at_rename[Path(dst).name] = stat.S_IMODE(os.stat(src).st_mode)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", watching_replace)
    old_umask = os.umask(0)
    try:
        Broker(
            tmp_path / "mosquitto", MqttConfig(host="127.0.0.1", port=free_port()), have_config=True
        ).setup(None)
    finally:
        os.umask(old_umask)
    assert "relay.secret" in at_rename, at_rename
    for name in ("relay.secret", "acl", "devices.json"):
        assert at_rename[name] & 0o007 == 0, (
            f"{name} was {oct(at_rename[name])} when it took its name"
        )
    own = tmp_path / "mosquitto" / "sensor-bridge"
    for name in ("relay.secret", "passwd", "acl", "devices.json"):
        assert stat.S_IMODE((own / name).stat().st_mode) & 0o007 == 0, name


# ---------------------------------------------------------------- values are data, never lines (issue 19)

INJECTED = "pattern readwrite #"


def mqtt_section(port: int, **overrides: object) -> MqttConfig:
    """[mqtt] as a config would give it, handed straight to the writer (no config check on the way)."""
    return MqttConfig(host="127.0.0.1", port=port, password=RELAY_PASSWORD, **overrides)


def test_a_newline_in_a_topic_never_lets_one_device_read_another(broker):  # noqa: F811
    cam1, cam2 = broker.add_device("cam1"), broker.add_device("cam2")
    before = snapshot(broker.root)
    hostile = Broker(
        broker.root, mqtt_section(broker.port, topics=[f"milesight/#\n{INJECTED}"]), True
    )
    try:
        hostile.setup(None)
    except BrokerError as exc:
        assert "topic 'milesight/#\\npattern readwrite #'" in str(exc)
        assert "nothing was written" in str(exc)
    else:
        raise AssertionError("the writer took a topic holding a newline")
    assert snapshot(broker.root) == before
    assert INJECTED not in (broker.root / "sensor-bridge" / "acl").read_text()
    broker.reload()  # whatever is on disk now is what mosquitto enforces

    relay = Login("sensor-bridge", RELAY_PASSWORD, "milesight/#", broker.port)
    reader, spy = Device(relay).wait_connected(), Device(cam1).wait_connected()
    try:
        reader.client.subscribe("milesight/cam2/#", qos=1)
        spy.client.subscribe("milesight/cam2/#", qos=1)
        wait_for(lambda: len(reader.granted) == 1 and len(spy.granted) == 1, 10, "subscriptions")
        assert accepted(cam2)
        wait_for(lambda: reader.received, 10, "the relay to get cam2's reading")
        time.sleep(1)  # cam1 would have had it by now as well
        assert spy.received == [], "device cam1 read device cam2's topic"
    finally:
        reader.close()
        spy.close()


@pytest.mark.parametrize(
    "username",
    ["relay\npattern readwrite #", "relay #", "relay\x00", "%u", "relay\tx", "ré"],
)
def test_a_hostile_relay_username_is_refused_before_any_file_is_written(broker, username):  # noqa: F811
    before = snapshot(broker.root)
    with pytest.raises(BrokerError, match=r"\[mqtt\] username"):
        Broker(broker.root, mqtt_section(broker.port, username=username), True).setup(None)
    assert snapshot(broker.root) == before


def test_a_device_name_with_a_trailing_newline_is_refused(broker):  # noqa: F811
    before = snapshot(broker.root)
    done = broker.cli("add-device", "cam1\n", check=False)
    assert done.returncode == 1 and "device name 'cam1\\n'" in done.stderr, done.stderr
    bad_bind = broker.cli("setup", "--bind", "127.0.0.1\nlistener 1 0.0.0.0", check=False)
    assert bad_bind.returncode == 1 and "--bind" in bad_bind.stderr, bad_bind.stderr
    assert snapshot(broker.root) == before


def test_a_refused_password_change_leaves_every_file_as_it_was(broker, tmp_path, monkeypatch):  # noqa: F811
    # mosquitto_passwd refusing (a full disk, a name it dislikes) used to leave the new ACL on disk.
    broker.add_device("cam1")
    before = snapshot(broker.root)
    refusing = tmp_path / "bin"
    refusing.mkdir()
    (refusing / "mosquitto_passwd").write_text("#!/bin/sh\necho 'Error: refused' >&2\nexit 1\n")
    (refusing / "mosquitto_passwd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{refusing}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BrokerError, match="mosquitto_passwd -b failed: Error: refused"):
        Broker(broker.root, mqtt_section(broker.port), True).add_device("cam2", rotate=False)
    assert snapshot(broker.root) == before
    assert "cam2" not in (broker.root / "sensor-bridge" / "acl").read_text()
    assert not list((broker.root / "sensor-bridge").glob(".passwd.*"))
