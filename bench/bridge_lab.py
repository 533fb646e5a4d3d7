"""A whole bridge on one machine, for the benchmarks that compare a release with an older one.

Simulated cameras in a process of their own, a reference receiver standing in
for the cloud API, a real mosquitto set up by ``sensor-bridge mqtt setup``, and
every service of a bridge started as systemd would start it, with its unit's environment (the collector,
the relay with MQTT and HTTP push on, the watchdog, the LED on gpiozero's mock
pins), from a source tree of choice: this checkout, or an older commit
exported with ``git archive`` (:func:`export_tree`), so that one run prints
the numbers before and after a change side by side.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import REPO, base_tables, free_port, write_config  # noqa: E402
from mqtt_helpers import Device, Mosquitto, relay_tables  # noqa: E402

from appliance.sim.receiver import SimReceiver  # noqa: E402

MOCK_PINS = {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
# The commit before issue 14 ("lean enough for a Pi Zero 2 W"): the figures it is measured against.
# $SENSOR_BRIDGE_BENCH_BEFORE measures against another commit instead (e.g. main before a merge).
BEFORE = os.environ.get("SENSOR_BRIDGE_BENCH_BEFORE") or "a8fffc5"
# Each service's systemd unit (in appliance/units/ of the tree measured): its Environment= lines
# are given to the service here as on a bridge. The LED had a unit of its own before issue 14.
UNIT_FILES = {
    "collector": "sensor-bridge.service",
    "relay": "sensor-bridge-relay.service",
    "watchdog": "sensor-bridge-watchdog.service",
    "led": "sensor-bridge-led.service",
}
CAMERA_FARM = """
import sys
from appliance.sim.camera import SimCamera
cams = [SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", seed=i).start()
        for i in range(int(sys.argv[1]))]
print(" ".join(c.url for c in cams), flush=True)
sys.stdin.read()
"""


def export_tree(ref: str, into: Path) -> Path | None:
    """``ref`` of this repository as a plain source tree in ``into`` (None: not in this clone)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True)
    if archive.returncode != 0:
        return None
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def unit_environment(tree: Path, service: str) -> dict[str, str]:
    """The variables the ``Environment=`` lines of ``service``'s unit in ``tree`` set ({}: no unit)."""
    unit = tree / "appliance" / "units" / UNIT_FILES[service]
    if not unit.exists():
        return {}
    env = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


class CountingReceiver(SimReceiver):
    """The reference receiver, counting every reading revision a 2xx batch delivered."""

    delivered = 0

    def _store(self, bridge_id: str, records: list[dict[str, Any]]) -> tuple[int, int, int]:
        stored = super()._store(bridge_id, records)
        self.delivered += len(records)
        return stored


@contextmanager
def camera_farm(n: int) -> Iterator[list[str]]:
    """N simulated cameras in their own process, so they do not share anyone's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CAMERA_FARM, str(n)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert len(urls) == n, "camera farm did not start"
        yield urls
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)


class Bridge:
    """Every service of one bridge from source tree ``tree``, its state under ``work``."""

    def __init__(
        self,
        tree: Path,
        work: Path,
        urls: list[str],
        receiver_url: str,
        interval_s: float,
        mqtt_port: int | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.tree, self.work = tree, work
        work.mkdir(parents=True, exist_ok=True)
        tables = (
            relay_tables(work, mqtt_port, free_port())
            if mqtt_port
            else base_tables(work, receiver_url)
        )
        tables["uplink"] = base_tables(work, receiver_url)["uplink"] | {"heartbeat_s": 60}
        tables["led"] = {"backend": "gpiozero", "pin": 17}
        tables["watchdog"] = {"check_s": 10}  # its watchdog runs --dry-run: it acts on nothing
        if run_dir:
            tables["paths"] = {"state_dir": str(work / "state"), "run_dir": str(run_dir)}
        tables["sensors"] = [
            {
                "id": f"cam-{i:03d}",
                "url": url,
                "username": "admin",
                "password": "pw",
                "interval_s": interval_s,
                "live_interval_s": interval_s,
                "collect": ["line_counts", "region_counts", "live_counts"],
                "backfill_h": 1,
            }
            for i, url in enumerate(urls)
        ]
        self.config = write_config(work / "config.toml", tables)
        self.outbox = work / "state" / "outbox.db"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def has_led_unit(self) -> bool:
        return (self.tree / "appliance" / "units" / "sensor-bridge-led.service").exists()

    def start(
        self, services: tuple[str, ...] = ("collector", "relay", "watchdog", "led")
    ) -> Bridge:
        argv = {
            "collector": ["run"],
            "relay": ["relay"],
            "led": ["led"],
            "watchdog": ["watchdog", "--dry-run", "--network-probe", "true"],
        }
        env = {**os.environ, **MOCK_PINS, "PYTHONPATH": str(self.tree), "NOTIFY_SOCKET": ""}
        for name in services:
            if name == "led" and not self.has_led_unit:
                continue  # the watchdog drives the LED
            with open(self.work / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "appliance", "-c", str(self.config), *argv[name]],
                    cwd=self.tree,
                    env={**env, **unit_environment(self.tree, name)},
                    stdout=log,
                    stderr=log,
                )
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class PeakRss:
    """Samples each process's resident memory every 0.1 s; ``peaks`` in MB."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        import psutil

        self.processes = {name: psutil.Process(p.pid) for name, p in procs.items()}
        self.peaks = dict.fromkeys(procs, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, process in self.processes.items():
                try:
                    self.peaks[name] = max(self.peaks[name], process.memory_info().rss / 1e6)
                except Exception:
                    pass

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


@contextmanager
def broker(work: Path) -> Iterator[tuple[Mosquitto, Device]]:
    """A real mosquitto set up by this checkout's ``mqtt setup``, and one device publishing to it."""
    port = free_port()
    config = write_config(work / "broker.toml", relay_tables(work / "broker-setup", port))
    server = Mosquitto(work / "mosquitto", config, port)
    server.cli("setup", "--bind", "127.0.0.1")
    server.start()
    device = Device(server.add_device("bench-device")).wait_connected()
    try:
        yield server, device
    finally:
        device.close()
        server.stop()


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def wait(seconds: float) -> None:
    time.sleep(seconds)
