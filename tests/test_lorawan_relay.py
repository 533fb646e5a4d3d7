"""A UG6x gateway set up with what `sensor-bridge mqtt add-gateway` printed, publishing to a real mosquitto,
and `sensor-bridge relay` storing its devices' readings; `sensor-bridge decode` for an installer."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest
from conftest import run_cli, wait_for, write_config
from mqtt_helpers import (
    Device,
    Login,
    OutboxReader,
    RelayProcess,
    broker,  # noqa: F401 - the fixture
    needs_mosquitto,
    relay_tables,
)

EUI = "24e124136b502217"


def test_decode_prints_the_values_as_json_and_names_the_byte_that_breaks_the_layout():
    done = run_cli("decode", "VS350", "04CC12001600 05CC13001400", "--fport", "85")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "total_in": 18,
        "total_out": 22,
        "period_in": 19,
        "period_out": 20,
    }
    broken = run_cli("decode", "vs350", "04CC1200")
    assert broken.returncode == 1 and "byte 0: total in/out needs 4 data bytes" in broken.stderr
    partly = run_cli("decode", "vs350", "017564 7777")
    assert partly.returncode == 0 and json.loads(partly.stdout) == {"battery": 100}
    assert "byte 3: channel 0x77 type 0x77 is not in the VS350 layout" in partly.stderr
    assert run_cli("decode", "vs350", "zz").returncode == 2
    assert run_cli("decode", "vs999", "00").returncode == 2  # argparse names the models it knows


VECTORS = json.loads(
    (Path(__file__).parent / "data" / "milesight_lorawan_vectors.json").read_text()
)["vectors"]


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["source"].endswith("-codec.json, bytes")],
    ids=lambda v: v["source"].split("/")[1],
)
def test_decode_prints_the_vendor_decoders_values_for_its_codec_example(vector):
    """The codec file's frame mixes most of a model's channels; names as in docs/milesight.md."""
    done = run_cli("decode", vector["model"], vector["hex"], "--fport", "85")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {**vector["values"], **vector.get("beyond_vendor", {})}


@needs_mosquitto
def test_gateway_added_and_configured_as_printed_delivers_each_uplink_once(broker, tmp_path: Path):  # noqa: F811
    out = broker.cli("add-gateway", "ug67").stdout
    fields = dict(re.findall(r"^\s+([A-Za-z ]+?):\s+(.*)$", out, re.MULTILINE))
    assert fields["Uplink data topic"].startswith("milesight/ug67/uplink")
    assert fields["Username"] == "ug67" and fields["Broker Port"] == str(broker.port)
    topic = fields["Uplink data topic"].split()[0]

    tables = relay_tables(tmp_path, broker.port, broker.push_port)  # type: ignore[attr-defined]
    write_config(broker.config, tables)
    with broker.config.open(
        "a"
    ) as config:  # the entry a person adds for the device behind the gateway
        config.write(
            f'\n[[mqtt.devices]]\nsensor_id = "door-1"\ndev_eui = "{EUI.upper()}"\n'
            'model = "vs133"\nperiod_s = 300\n'
        )
    relay = RelayProcess(broker.config, tmp_path / "run", tmp_path / "relay.log").start()
    try:
        relay.wait_connected()
        gateway = Device(Login("ug67", fields["Password"], topic, broker.port)).wait_connected()
        n = 50
        for i in range(n):
            frame = bytes.fromhex("05CC") + i.to_bytes(2, "little") + (i // 2).to_bytes(2, "little")
            uplink = {
                "devEUI": EUI,
                "fPort": 85,
                "time": f"2025-07-01T10:{i:02d}:00Z",
                "data": base64.b64encode(frame).decode(),
            }
            gateway.publish(json.dumps(uplink))
            if i % 10 == 0:
                gateway.publish(json.dumps(uplink))  # the gateway retries: still one reading
        gateway.publish(json.dumps({"devEUI": EUI, "fPort": 85, "data": "d3c="}))  # 0x77: not VS133
        box = OutboxReader(tmp_path / "state" / "outbox.db")
        wait_for(lambda: box.count() >= n and box.dead(), 30, f"{n} readings and one dead letter")
        time.sleep(0.3)
        readings = box.readings()
        assert len(readings) == n and {r["sensor_id"] for r in readings} == {"door-1"}
        sample = next(r for r in readings if r["period_end"] == "2025-07-01T10:07:00Z")
        assert sample["kind"] == "line_counts" and sample["period_start"] == "2025-07-01T10:02:00Z"
        assert sample["values"]["lines"] == {"1": {"in": 7, "out": 3}}
        dead = box.dead()
        assert (
            len(dead) == 1
            and "channel 0x77 type 0x77 is not in the VS133 layout" in dead[0]["reason"]
        )
        gateway.close()
    finally:
        relay.cleanup()


@needs_mosquitto
def test_a_frame_with_a_trailing_unknown_entry_stores_its_readings_and_an_event_with_the_rest(
    broker,  # noqa: F811
    tmp_path: Path,
):
    """Issue 21: one unknown byte no longer costs the frame; `status` still names the device."""
    out = broker.cli("add-gateway", "ug65").stdout
    fields = dict(re.findall(r"^\s+([A-Za-z ]+?):\s+(.*)$", out, re.MULTILINE))
    topic = fields["Uplink data topic"].split()[0]
    write_config(broker.config, relay_tables(tmp_path, broker.port, broker.push_port))  # type: ignore[attr-defined]
    with broker.config.open("a") as config:
        config.write(
            f'\n[[mqtt.devices]]\nsensor_id = "door-2"\ndev_eui = "{EUI}"\nmodel = "vs135"\n'
        )
    relay = RelayProcess(broker.config, tmp_path / "run", tmp_path / "relay.log").start()
    try:
        relay.wait_connected()
        gateway = Device(Login("ug65", fields["Password"], topic, broker.port)).wait_connected()
        frame = (
            "05CC07000300" + "0FE302100709" + "9901AB"
        )  # counts, regions, then 0x99 0x01: unknown
        gateway.publish(
            json.dumps(
                {
                    "devEUI": EUI,
                    "fPort": 85,
                    "time": "2025-07-01T10:00:00Z",
                    "data": base64.b64encode(bytes.fromhex(frame)).decode(),
                    "metadata": {"mqtt_topic": topic},
                }
            )
        )
        box = OutboxReader(tmp_path / "state" / "outbox.db")
        wait_for(lambda: box.count() >= 3, 30, "line counts, occupancy and the event")
        kinds = {r["kind"]: r for r in box.readings()}
        assert set(kinds) == {"line_counts", "occupancy", "event"} and not box.dead()
        assert kinds["line_counts"]["values"]["lines"] == {"1": {"in": 7, "out": 3}}
        assert kinds["occupancy"]["values"]["current_total"] == 34
        event = kinds["event"]["values"]
        assert event["event"] == "lorawan frame partly decoded"
        assert event["payload"]["undecoded"] == {
            "model": "vs135",
            "frame": frame.lower(),
            "byte": 12,
            "rest": "9901ab",
            "reason": "byte 12: channel 0x99 type 0x01 is not in the VS135 layout",
        }
        status = run_cli("-c", str(broker.config), "status").stdout
        assert "door-2: 1 LoRaWAN frame not fully understood today" in status, status
        assert "channel 0x99 type 0x01 is not in the VS135 layout" in status
        gateway.close()
    finally:
        relay.cleanup()


pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]
