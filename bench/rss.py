"""Benchmark: peak memory (RSS) of every service of a bridge, this checkout beside the release before.

As on a bridge: 10 simulated cameras polled every 10 s for line, region and
live counts, HTTP push on, the relay subscribed to a real mosquitto that one
device publishes to every second, the watchdog, and the LED on gpiozero's mock
pins. The before tree (``bridge_lab.BEFORE``, exported with git archive) runs
first, then this checkout, each for the same time against the same cameras and
broker; each service's peak RSS is sampled every 0.1 s.

Run: .venv/bin/python bench/rss.py [seconds per tree, default 45]
Target (issue 14): all services under 90 MB in total.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from bridge_lab import (
    BEFORE,
    REPO,
    Bridge,
    CountingReceiver,
    PeakRss,
    broker,
    camera_farm,
    cleanup,
    export_tree,
    temp_dir,
    wait,
)
from relay import report

SERVICES = ("collector", "relay", "watchdog", "led")
TARGET_MB = 90.0


def measure(
    tree: Path, work: Path, urls: list[str], receiver_url: str, mqtt_port: int, seconds: float
) -> dict[str, float]:
    bridge = Bridge(tree, work, urls, receiver_url, 10, mqtt_port).start()
    try:
        sampler = PeakRss(bridge.procs)
        wait(seconds)
        return sampler.stop()
    finally:
        bridge.stop()


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 45.0
    work = temp_dir("bench-rss-")
    before = export_tree(BEFORE, work / "before-tree")
    results: dict[str, dict[str, float]] = {}
    publishing = threading.Event()
    try:
        with (
            CountingReceiver(db_path=work / "rx.db", api_key="test-key") as rx,
            camera_farm(10) as urls,
            broker(work) as (server, device),
        ):

            def publish() -> None:
                i = 0
                while not publishing.wait(1.0):
                    device.publish(report(0, i))
                    i += 1

            threading.Thread(target=publish, daemon=True).start()
            trees = ([("before", before)] if before else []) + [("after", REPO)]
            for name, tree in trees:
                results[name] = measure(tree, work / name, urls, rx.url, server.port, seconds)
            publishing.set()
    finally:
        cleanup(work)
    show(results, seconds)
    total = sum(results["after"].values())
    return 0 if total < TARGET_MB else 1


def show(results: dict[str, dict[str, float]], seconds: float) -> None:
    print(
        f"peak RSS, MB: 10 cameras every 10 s (line, region, live), push and MQTT on, {seconds:g} s per tree"
    )
    names = list(results)
    print(f"{'service':<34}" + "".join(f"{n:>10}" for n in names))
    for service in SERVICES:
        cells = []
        for name in names:
            value = results[name].get(service)
            cells.append(f"{value:>10.1f}" if value is not None else f"{'in wd':>10}")
        print(f"{service:<34}" + "".join(cells))
    print(f"{'total':<34}" + "".join(f"{sum(results[n].values()):>10.1f}" for n in names))
    if "before" not in results:
        print(
            f"(no before tree: commit {BEFORE} is not in this clone; issue 14 recorded 125 MB with push only)"
        )
    total = sum(results["after"].values())
    print(f"target: all services < {TARGET_MB:g} MB -> {'met' if total < TARGET_MB else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
