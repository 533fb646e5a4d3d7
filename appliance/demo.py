"""``sensor-bridge demo``: the whole data path on one machine, no hardware needed.

Starts two simulated Milesight cameras, a local receiver that speaks the
cloud API's ingest contract, and the real collector between them, all on
loopback, and prints readings as they arrive until Ctrl-C. The config it runs
on is written to a temp dir and printed, so ``status`` and ``doctor`` work
against the demo from a second terminal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .config import Config, parse_config
from .notify import stop_on_signals
from .service import run_service

DEMO_KEY = "demo-key"


def demo_config(
    workdir: Path, camera_urls: list[str], receiver: Any, health_port: int
) -> dict[str, Any]:
    """The embedded default: two cameras polled every 10 s, delivered to the local receiver."""
    return {
        "bridge": {"id": "demo-store", "timezone": "Europe/Lisbon", "require_time_sync": False},
        "paths": {"state_dir": str(workdir / "state"), "run_dir": str(workdir / "run")},
        "uplink": {
            "url": receiver.url,
            "api_key": DEMO_KEY,
            "heartbeat_url": receiver.heartbeat_url,
            "heartbeat_s": 30,
            "batch_size": 100,
        },
        "health": {"listen": f"127.0.0.1:{health_port}"},
        "watchdog": {"reboot": False},  # and the demo's watchdog runs --dry-run
        "led": {"backend": "none"},
        "sensors": [
            {
                "id": name,
                "url": url,
                "username": "admin",
                "password": "demo",
                "timezone": "Europe/Lisbon",
                "interval_s": 10,
                "live_interval_s": 10,
                "backfill_h": 24,
                "collect": ["line_counts", "region_counts", "live_counts"],
            }
            for name, url in zip(("entrance", "back-door"), camera_urls, strict=False)
        ],
    }


def write_toml(config: dict[str, Any], path: Path) -> None:
    """Enough TOML for the demo's own config (strings, numbers, bools, lists, tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines = []
    for name, body in config.items():
        for row in body if isinstance(body, list) else [body]:
            lines.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in row.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_cameras() -> list[Any]:
    """Two simulated cameras: the entrance (two lines), the back door (one line, compact headers)."""
    from .sim.camera import SimCamera

    common = {"timezone": "Europe/Lisbon", "username": "admin", "password": "demo"}
    return [
        SimCamera(**common, lines=2, regions=2, seed=1),
        SimCamera(**common, lines=1, regions=1, seed=2, header_style="compact"),
    ]


def _announce(cameras: list[Any], receiver: Any, health_port: int, config_path: Path) -> None:
    print(
        f"""
sensor-bridge demo
  cameras:   {cameras[0].url} (entrance), {cameras[1].url} (back-door)
  receiver:  {receiver.url}
  health:    http://127.0.0.1:{health_port}/health
  config:    {config_path}
  try:       {Path(sys.argv[0]).name} -c {config_path} status
             curl -X POST -d html {cameras[1].url}/_sim/fault   (make a camera misbehave; 'none' heals it)
Press Ctrl-C to stop.
""",
        flush=True,
    )


def _watchdog(config_path: Path) -> subprocess.Popen[bytes]:
    """The watchdog beside the demo, acting on nothing (dry run) and with no network to probe."""
    command = ["-c", str(config_path), "watchdog", "--dry-run", "--network-probe", "true"]
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_demo(seconds: float | None = None) -> int:
    """Cameras, a receiver and the collector between them, until Ctrl-C (or ``seconds``)."""
    from .collector import Collector
    from .sim.receiver import SimReceiver

    stop = stop_on_signals()  # first: a Ctrl-C while it starts up still stops it cleanly
    workdir = Path(tempfile.mkdtemp(prefix="sensor-bridge-demo-"))
    receiver = SimReceiver(db_path=workdir / "cloud.db", api_key=DEMO_KEY, announce=True)
    cameras = _demo_cameras()
    receiver.start()
    for camera in cameras:
        camera.start()
    health_port = _free_port()
    raw = demo_config(workdir, [c.url for c in cameras], receiver, health_port)
    config_path = workdir / "config.toml"
    write_toml(raw, config_path)
    config: Config = parse_config(raw, path=str(config_path))
    _announce(cameras, receiver, health_port, config_path)
    watchdog = _watchdog(config_path)
    timer = threading.Timer(seconds or 0, stop.set)
    timer.daemon = True
    if seconds:
        timer.start()
    try:
        return run_service(lambda stop: Collector(config, stop), stop)
    finally:
        timer.cancel()
        watchdog.terminate()
        watchdog.wait(timeout=10)
        held = receiver.records()
        for camera in cameras:
            camera.stop()
        receiver.stop()
        time.sleep(0.1)
        print(f"\ndemo stopped: the receiver holds {len(held)} readings; files in {workdir}")


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.seconds)


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="simulated cameras -> collector -> local receiver, on this machine"
    )
    demo.add_argument("--seconds", type=float, help="stop by itself after this long")
    demo.set_defaults(func=_demo)
