"""Benchmark: peak memory and import time of ``sensor-bridge discover``, and what the libraries would cost.

The scan runs for real on a store LAN built in network namespaces
(tests/discover_helpers.py: five simulated cameras, a routed subnet, wg0),
as root, and its peak RSS is the child's ru_maxrss. Beside it, the import
cost of the libraries the issue suggests (``zeroconf``, ``wsdiscovery``) is
measured in the Python given by --libs-python, a venv holding them (they are
not project dependencies: pip install zeroconf wsdiscovery into a scratch
venv), against the standard-library modules the hand-written probes use.

Run (root): .venv/bin/python bench/discover_rss.py [--libs-python /tmp/venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
IMPORTS = {
    "stdlib modules of the hand-written probes": "import socket, selectors, struct, json, "
    "subprocess, http.client, xml.etree.ElementTree",
    "appliance.discover.scan (this checkout)": "import appliance.discover.scan",
    "zeroconf": "import zeroconf",
    "wsdiscovery": "from wsdiscovery.discovery import ThreadedWSDiscovery",
    "zeroconf + wsdiscovery": "import zeroconf; from wsdiscovery.discovery import ThreadedWSDiscovery",
}


def import_cost(python: str, statement: str) -> tuple[float, float] | None:
    code = f"import time; t = time.perf_counter(); {statement}; s = time.perf_counter() - t; print(s); {PEAK}"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        return None
    seconds, mb = done.stdout.split()
    return float(seconds), float(mb)


def scan_rss(python: str = sys.executable, preload: str = "") -> tuple[float, float, int]:
    """Peak RSS, seconds and devices of one discover run; ``preload`` is imported first (a
    library's cost in the same command, a lower bound of what using it would cost)."""
    from discover_helpers import LAN, ROUTED, StoreLan
    from test_discover import start_camera

    lan = StoreLan()
    stops = []
    try:
        for short, last, responder in (("c1", 11, {}), ("c2", 12, {"repeat": 2}), ("c3", 13, None)):
            ns = lan.add_host(short, f"{LAN}.{last}")
            stops.append(start_camera(lan, ns, f"{LAN}.{last}", responder, serial=f"B{last}")[2])
        stops.append(start_camera(lan, lan.routed, f"{ROUTED}.5", {}, serial="B5")[2])
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lan.pi,
                python,
                "-c",
                f"{preload}; import sys; from appliance.cli import main; sys.exit(main())",
                "discover",
                "--json",
                "--subnet",
                f"{ROUTED}.0/24",
            ],  # fmt: skip
            cwd=REPO,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.monotonic() - started
        return usage.ru_maxrss / 1024, took, out.count(b'"identity"')
    finally:
        for stop in stops:
            stop()
        lan.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs-python", help="a Python with zeroconf and wsdiscovery installed")
    args = parser.parse_args()
    print("import cost (seconds, peak RSS MB of a fresh interpreter):")
    for python in filter(None, (sys.executable, args.libs_python)):
        for name, statement in IMPORTS.items():
            cost = import_cost(python, statement)
            if cost:
                print(f"  {name:<45} {cost[0]:6.3f} s  {cost[1]:6.1f} MB   ({python})")
    if os.geteuid() == 0:
        runs = [("hand-written probes (this checkout)", sys.executable, "pass")]
        if args.libs_python:
            runs += [
                ("same, with zeroconf imported", args.libs_python, "import zeroconf"),
                ("same, with wsdiscovery imported", args.libs_python, IMPORTS["wsdiscovery"]),
            ]
        print("sensor-bridge discover on the namespace LAN (peak RSS, seconds, devices):")
        for name, python, preload in runs:
            mb, took, devices = scan_rss(python, preload)
            print(f"  {name:<45} {mb:6.1f} MB  {took:4.1f} s  {devices} devices")
    else:
        print("not root: the scan itself is not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
