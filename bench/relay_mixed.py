"""Benchmark: a mixed stream of every pushed and LoRaWAN format, every reading exactly once across two SIGKILLs.

10,000 messages (by default) published over MQTT QoS 1 to a real mosquitto,
in rotation: VS121-P occupancy reports (push JSON), VS125 line reports with
running totals, UG6x raw uplinks of a VS133, a VS350 and an AM307, a UG6x
uplink already decoded by the gateway's codec, a ChirpStack v4 uplink of a
VS330, and a The Things Stack v3 uplink of a VS121. Every tenth message is
published twice (a device or gateway retrying). The real ``sensor-bridge
relay`` is SIGKILLed twice mid-stream and restarted.

What must hold: the outbox holds exactly the readings the parser makes of the
stream (the same ids, once each, revision 1), nothing is dead-lettered. Prints
messages/s from the first publish to the last committed reading (kills and
restarts included).

Run: .venv/bin/python bench/relay_mixed.py [messages]
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import free_port, write_config
from mqtt_helpers import Device, Mosquitto, OutboxReader, RelayProcess, relay_tables, wait_for

from appliance.config import MqttDevice
from appliance.push.parser import PushParser

T0 = datetime(2025, 1, 1, tzinfo=UTC)
EUIS = {
    "vs133": "24e1240000000133",
    "vs350": "24e1240000000350",
    "am307": "24e1240000000307",
    "vs330": "24e1240000000330",
    "vs121": "24e1240000000121",
}
DEVICES = [
    MqttDevice(f"{model}-1", dev_eui=eui, model=model, period_s=60) for model, eui in EUIS.items()
]


def moment(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def iso(i: int) -> str:
    return moment(i).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(frame: bytes) -> str:
    return base64.b64encode(frame).decode()


def vs121p(i: int) -> dict:
    wall = (moment(i) + timedelta(hours=1)).strftime("%Y/%m/%d %H:%M:%S")
    end = (moment(i) + timedelta(hours=1, minutes=1)).strftime("%Y/%m/%d %H:%M:%S")
    return {
        "event": "Region People Counting",
        "report_type": "interval",
        "device_info": {"device_sn": "SN-121P"},
        "time_info": {"timezone": "UTC+1:00", "start_time": wall, "end_time": end},
        "current_total": i % 9,
        "max_counted": i % 9 + 1,
        "numbering_regions": [1, 2],
        "current_counted": [i % 9 // 2, i % 9 - i % 9 // 2],
        "occupancy": [1, 0],
    }


def vs125(i: int) -> dict:
    return {
        "device_info": {"device_sn": "SN-125"},
        "time_info": {"start_time": iso(i), "end_time": iso(i + 1)},
        "line_periodic_data": [{"line": 1, "total": {"in": i % 7, "out": i % 5}}],
        "line_total_data": [{"line": 1, "total": {"in_counted": i, "out_counted": i // 2}}],
    }


def ug6x(model: str, frame: bytes, i: int) -> dict:
    return {
        "applicationID": "1",
        "deviceName": model,
        "devEUI": EUIS[model],
        "fPort": 85,
        "time": iso(i),
        "data": b64(frame),
    }


FORMATS: list[Callable[[int], dict]] = [
    vs121p,
    vs125,
    lambda i: ug6x(
        "vs133",
        b"\x03\xd2"
        + struct.pack("<I", i)
        + b"\x04\xd2"
        + struct.pack("<I", i // 2)
        + b"\x05\xcc"
        + struct.pack("<HH", i % 11, i % 3),
        i,
    ),
    lambda i: ug6x(
        "vs350",
        b"\x01\x75\x64\x04\xcc"
        + struct.pack("<HH", i % 60000, i % 50000)
        + b"\x05\xcc"
        + struct.pack("<HH", i % 9, i % 4),
        i,
    ),
    lambda i: ug6x(
        "am307",
        b"\x03\x67"
        + struct.pack("<h", 200 + i % 50)
        + b"\x04\x68\x7c\x07\x7d"
        + struct.pack("<H", 400 + i % 900),
        i,
    ),
    lambda i: {
        "devEUI": EUIS["am307"],
        "fPort": 85,
        "time": iso(i).replace("Z", ".5Z"),
        "temperature": 21.5,
        "humidity": 40,
        "co2": 500 + i % 100,
        "tvoc": 0.5,
    },
    lambda i: {
        "time": iso(i),
        "deviceInfo": {"devEui": EUIS["vs330"], "deviceName": "stall"},
        "fPort": 85,
        "data": b64(b"\x02\x82" + struct.pack("<H", i % 2000) + b"\x03\x8e" + bytes([i % 2])),
    },
    lambda i: {
        "end_device_ids": {"device_id": "office", "dev_eui": EUIS["vs121"].upper()},
        "uplink_message": {
            "f_port": 85,
            "received_at": iso(i),
            "frm_payload": b64(
                b"\x04\xc9" + bytes([i % 20, 2]) + b"\x00\x01\x06\xcd" + bytes([i % 20 + 1])
            ),
        },
    },
]


def messages(total: int) -> list[str]:
    """The stream: format i % len(FORMATS) at minute i (distinct in time, so distinct readings)."""
    out = []
    for i in range(total):
        out.append(json.dumps(FORMATS[i % len(FORMATS)](i)))
    return out


def expected_ids(stream: list[str]) -> set[str]:
    parser = PushParser(DEVICES, "UTC")
    ids: set[str] = set()
    for body in stream:
        parsed = parser.parse(
            body.encode(),
            source="mqtt",
            topic="bench",
            origin="bench",
            received_at=datetime.now(UTC),
        )
        assert not parsed.dead, (parsed.dead, body)
        ids |= {r.id for r in parsed.records}
    return ids


def main() -> int:
    if not shutil.which("mosquitto"):
        print("needs mosquitto: apt-get install mosquitto mosquitto-clients")
        return 2
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    stream = messages(total)
    want = expected_ids(stream)
    work = Path(tempfile.mkdtemp(prefix="bench-relay-mixed-"))
    port = free_port()
    config = write_config(work / "config.toml", relay_tables(work, port))
    with config.open("a") as f:
        for d in DEVICES:
            f.write(
                f'\n[[mqtt.devices]]\nsensor_id = "{d.sensor_id}"\ndev_eui = "{d.dev_eui}"\n'
                f'model = "{d.model}"\nperiod_s = {d.period_s:g}\n'
            )
    broker = Mosquitto(work / "mosquitto", config, port)
    broker.cli("setup", "--bind", "127.0.0.1")
    broker.start()
    relay = RelayProcess(config, work / "run", work / "relay.log")
    box = OutboxReader(work / "state" / "outbox.db")
    gateway = None
    try:
        gateway = Device(broker.add_device("ug67"), inflight=1000).wait_connected()
        relay.start().wait_connected()
        started = time.perf_counter()

        def publish() -> None:
            for i, body in enumerate(stream):
                gateway.publish(body)  # type: ignore[union-attr]
                if i % 10 == 0:
                    gateway.publish(body)  # type: ignore[union-attr]  # retried by the sender: one reading

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        kills = 0
        for threshold in (len(want) * 15 // 100, len(want) * 55 // 100):
            wait_for(lambda t=threshold: box.count() >= t, 300, f"{threshold} readings committed")
            relay.kill()  # wherever it is: between receive, commit and acknowledgement
            kills += 1
            relay.start().wait_connected()
        publisher.join(300)
        wait_for(lambda: box.count() >= len(want), 300, f"{len(want)} readings committed")
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # a late redelivery must not add a row
        readings = box.readings()
        got = [r["id"] for r in readings]
        dead = box.dead()
        assert relay.terminate() == 0
    finally:
        relay.cleanup()
        if gateway:
            gateway.close()
        broker.stop()
    exact = len(got) == len(set(got)) == len(want) and set(got) == want
    print(
        f"{total:,} messages in {len(FORMATS)} formats (+{(total + 9) // 10:,} retried copies) -> "
        f"{len(want):,} readings; relay SIGKILLed {kills} times"
    )
    print(f"messages/s, publish -> stored (kills included): {total / elapsed:,.0f}")
    print(
        f"readings stored {len(got):,}, distinct {len(set(got)):,}, expected {len(want):,}; "
        f"revisions {sorted({r['revision'] for r in readings})}; dead letters {len(dead)}"
    )
    ok = exact and kills == 2 and not dead and {r["revision"] for r in readings} == {1}
    print("every reading exactly once: " + ("yes" if ok else "NO"))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
