"""Benchmark: MQTT messages per second from mosquitto into committed outbox rows, and the relay's memory.

Baseline, measured in the same run against the same broker: ``mosquitto_sub
-q 1`` writing every message to a file (no parsing, no fsync): what the
broker and the loopback can deliver to one QoS 1 subscriber at all.

Both face the same stream: four devices publish VS121-P periodic reports
(QoS 1, paho, MQTT 3.1.1) as fast as they can. The relay is the real
``sensor-bridge relay`` process; the clock stops when the last reading is
committed, and every message's reading must be there (zero loss).

Run: .venv/bin/python bench/relay.py [messages]
Target (2-core dev machine): >= 2,000 messages/s with zero loss.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import free_port, write_config
from mqtt_helpers import (
    RELAY_PASSWORD,
    Device,
    Mosquitto,
    OutboxReader,
    RelayProcess,
    relay_tables,
    wait_for,
)

DEVICES = 4
T0 = datetime(2025, 1, 1)


def report(device: int, i: int) -> str:
    start = T0 + timedelta(minutes=i)
    return json.dumps(
        {
            "event": "Region People Counting",
            "report_type": "interval",
            "device_info": {
                "device": "Workplace Sensor",
                "device_sn": f"SN-{device}",
                "ip_address": "192.168.0.99",
            },
            "time_info": {
                "timezone": "UTC+1:00",
                "dst_status": False,
                "start_time": start.strftime("%Y/%m/%d %H:%M:%S"),
                "end_time": (start + timedelta(minutes=1)).strftime("%Y/%m/%d %H:%M:%S"),
            },
            "current_total": i % 40,
            "max_counted": i % 40 + 2,
            "total_mapped_regions": 2,
            "numbering_regions": [1, 2],
            "current_counted": [i % 40 // 2, i % 40 - i % 40 // 2],
        }
    )


def stream(devices: list[Device], per_device: int, offset: int) -> float:
    """Every device publishes its share at full speed; returns the start time."""
    payloads = [[report(d, offset + i) for i in range(per_device)] for d in range(len(devices))]
    started = time.perf_counter()
    threads = [
        threading.Thread(target=lambda dev=dev, mine=mine: [dev.publish(p) for p in mine])
        for dev, mine in zip(devices, payloads, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started


def main() -> int:
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_sub"):
        print("needs mosquitto and mosquitto-clients: apt-get install mosquitto mosquitto-clients")
        return 2
    import psutil

    total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    per_device = total // DEVICES
    total = per_device * DEVICES
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    port = free_port()
    config = write_config(work / "config.toml", relay_tables(work, port))
    broker = Mosquitto(work / "mosquitto", config, port)
    broker.cli("setup", "--bind", "127.0.0.1")
    broker.start()
    relay = RelayProcess(config, work / "run", work / "relay.log")
    devices: list[Device] = []
    try:
        devices = [Device(broker.add_device(f"dev{d}"), inflight=1000) for d in range(DEVICES)]
        for device in devices:
            device.wait_connected()
        # Baseline: mosquitto_sub -q 1 into a file, until it has every message.
        sink = work / "baseline.txt"
        with open(sink, "wb") as out:
            sub = subprocess.Popen(
                [
                    "mosquitto_sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-q",
                    "1",
                    "-i",
                    "bench-baseline",
                    "-u",
                    "sensor-bridge",
                    "-P",
                    RELAY_PASSWORD,
                    "-t",
                    "milesight/#",
                    "-C",
                    str(total),
                ],
                stdout=out,
            )
            time.sleep(1.0)  # subscribed
            started = stream(devices, per_device, 0)
            sub.wait(timeout=300)
        baseline_s = time.perf_counter() - started
        baseline_lines = len(sink.read_bytes().splitlines())

        # The relay: from the first publish to the last committed row.
        box = OutboxReader(work / "state" / "outbox.db")
        relay.start().wait_connected()
        process = psutil.Process(relay.proc.pid)  # type: ignore[union-attr]
        rss_idle = process.memory_info().rss
        peak = [rss_idle]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                peak[0] = max(peak[0], process.memory_info().rss)

        threading.Thread(target=sample, daemon=True).start()
        started = stream(devices, per_device, per_device)
        wait_for(lambda: box.count() >= total, 600, "every reading committed")
        relay_s = time.perf_counter() - started
        sampling.set()
        stored = box.count()
        assert relay.terminate() == 0
    finally:
        relay.cleanup()
        for device in devices:
            device.close()
        broker.stop()

    lost = total - stored
    print(f"{total:,} QoS 1 messages from {DEVICES} devices through mosquitto on loopback")
    print(f"{'':34} {'sensor-bridge':>14} {'baseline':>10}")
    print(
        f"{'messages/s, publish -> stored':34} {total / relay_s:>14,.0f} {total / baseline_s:>10,.0f}"
        "   (baseline: mosquitto_sub -q 1 > file)"
    )
    print(f"{'messages lost':34} {lost:>14,} {total - baseline_lines:>10,}")
    print(f"{'relay RSS, MB (idle / peak)':34} {rss_idle / 1e6:>6.0f} / {peak[0] / 1e6:<5.0f}")
    met = total / relay_s >= 2000 and lost == 0
    print(f"target: >= 2,000 messages/s with zero loss -> {'met' if met else 'NOT met'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
