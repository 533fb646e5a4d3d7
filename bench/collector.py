"""Benchmark: how long one poll cycle takes for 1, 50 and 200 cameras, and the collector's memory.

Every simulated camera answers after 200 ms, like a busy real one. The
baseline is the ideal cycle, one latency: every sensor polls in its own lane,
so a perfect collector polls them all at once. Then `sensor-bridge run` polls 50 cameras
for a while, started with its systemd unit's environment, and its peak RSS is sampled; beside it
the floor any Python collector pays, a bare ``python3 -c "import requests"``, measured in the
same run.

Run: .venv/bin/python bench/collector.py
Targets (2-core dev machine): 200 cameras within 2x ideal; 50 cameras' RSS < 32 MB (issue 14).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bridge_lab import unit_environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import CLI, REPO, base_tables, write_config  # noqa: E402

from appliance.collector import Collector  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.sim.receiver import SimReceiver  # noqa: E402

LATENCY_S = 0.2
RSS_TARGET_MB = 32.0
CAMERA_FARM = """
import sys, time
from appliance.sim.camera import SimCamera
cams = [SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", latency_ms=%d, seed=i).start()
        for i in range(int(sys.argv[1]))]
print(" ".join(c.url for c in cams), flush=True)
sys.stdin.read()
"""


def camera_farm(n: int) -> tuple[subprocess.Popen[str], list[str]]:
    """N simulated cameras in their own process, so they do not share the collector's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CAMERA_FARM % (LATENCY_S * 1000), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    urls = proc.stdout.readline().split()
    assert len(urls) == n, "camera farm did not start"
    return proc, urls


def config_for(workdir: Path, urls: list[str], receiver_url: str, interval_s: float) -> Path:
    tables = base_tables(workdir, receiver_url)
    tables["sensors"] = [
        {
            "id": f"cam-{i:03d}",
            "url": url,
            "username": "admin",
            "password": "pw",
            "interval_s": interval_s,
            "collect": ["line_counts"],
            "backfill_h": 2,
        }
        for i, url in enumerate(urls)
    ]
    return write_config(workdir / "config.toml", tables)


def poll_cycle(n: int, receiver: SimReceiver) -> tuple[float, float]:
    farm, urls = camera_farm(n)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            collector = Collector(load_config(config_for(Path(tmp), urls, receiver.url, 300)))
            collector.time_synced = True
            for sensor_id in collector.pollers:  # warm-up: connections, first backfill
                collector.submit_poll(sensor_id, "line_counts")
            collector.lanes.wait_idle(120)
            start = time.perf_counter()
            for sensor_id in collector.pollers:
                collector.submit_poll(sensor_id, "line_counts")
            collector.lanes.wait_idle(120)
            took = time.perf_counter() - start
            failing = [s.id for s in collector.sensors.values() if s.state != "ok"]
            assert not failing, f"polls failed: {failing[:3]}"
            collector.lanes.close(5, collector._cut_polls)
            collector.outbox.close()
            return took, LATENCY_S
    finally:
        farm.stdin.close()
        farm.wait()


def peak_rss(n: int, seconds: float, receiver: SimReceiver) -> float:
    farm, urls = camera_farm(n)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = config_for(Path(tmp), urls, receiver.url, 2)
            proc = subprocess.Popen(
                [*CLI, "-c", str(config), "run"],
                cwd=REPO,
                env={**os.environ, **unit_environment(REPO, "collector")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peak = 0.0
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                peak = max(peak, psutil.Process(proc.pid).memory_info().rss / 1e6)
                time.sleep(0.1)
            proc.terminate()
            proc.wait(timeout=30)
            return peak
    finally:
        farm.stdin.close()
        farm.wait()


def requests_floor_rss() -> float:
    """Peak RSS of a bare ``python3 -c "import requests"``: the floor any Python collector pays."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import requests, sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    peak, process = 0.0, psutil.Process(proc.pid)
    stop = time.monotonic() + 3.0  # the import is done within a second; sampled a while longer
    while time.monotonic() < stop:
        peak = max(peak, process.memory_info().rss / 1e6)
        time.sleep(0.05)
    proc.communicate(b"")
    return peak


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimReceiver(db_path=Path(tmp) / "rx.db", api_key="test-key") as rx,
    ):
        print(f"poll cycle, every camera answering in {LATENCY_S * 1000:.0f} ms")
        print(f"{'cameras':>8} {'measured s':>11} {'ideal s':>8} {'ratio':>6}")
        for n in (1, 50, 200):
            took, ideal = poll_cycle(n, rx)
            print(f"{n:>8} {took:>11.2f} {ideal:>8.2f} {took / ideal:>6.2f}x")
        threading.Event().wait(0.5)
        rss = peak_rss(50, 20, rx)
        floor = requests_floor_rss()
        print("\npeak RSS, MB: `sensor-bridge run`, 50 cameras polled every 2 s for 20 s")
        print(f"{'collector':>10} {'import requests':>16} {'above floor':>12} {'target':>7}")
        print(f"{rss:>10.1f} {floor:>16.1f} {rss - floor:>12.1f} {RSS_TARGET_MB:>7.0f}")
        verdict = "met" if rss < RSS_TARGET_MB else "NOT met"
        print(f"target: 50 cameras < {RSS_TARGET_MB:g} MB -> {verdict}")


if __name__ == "__main__":
    main()
