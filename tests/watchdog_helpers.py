"""Test plumbing for the watchdog and the LED: stand-in services, command recorders, namespaces.

* A stand-in service is a real process that writes its status file the way the
  bridge's services do (``python tests/watchdog_helpers.py service RUN_DIR NAME
  STATE [HOG_MB]``); a test kills it, SIGSTOPs it or makes it hold memory.
* Restart and reboot are fixed ``systemctl`` calls (never commands from the
  config): every process a Lab starts finds a recording ``systemctl`` first in
  its PATH, which appends each call to one log, so a test sees what the
  watchdog did and in which order, and nothing acts on the machine.
* The watchdog always runs inside a network namespace the test creates: alone
  (no default route: the network is down) or wired by a veth pair to a
  "gateway" namespace. Its probe never reaches a real address.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, REPO, base_tables, closed_port_url, wait_for, write_config

HERE = Path(__file__).resolve()
_names = itertools.count()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ network namespaces


def netns_problem() -> str | None:
    """Why this machine cannot give the watchdog a namespace of its own (None: it can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    if not shutil.which("ip"):
        return "needs iproute2 (ip) to create network namespaces"
    name = f"sbprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return "cannot create a network namespace here (ip netns add failed)"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


needs_netns = pytest.mark.skipif(
    bool(netns_problem()),
    reason=f"{netns_problem()}: the watchdog's network probe must stay inside one",
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class NetNs:
    """A namespace for the watchdog: loopback only, or with a veth link to a gateway namespace."""

    GATEWAY, ADDRESS = "10.213.0.1", "10.213.0.2"  # example: exists only in the test's namespaces

    def __init__(self, gateway: bool) -> None:
        n = f"{os.getpid() % 100000}x{next(_names)}"
        self.name = f"sbw{n}"
        self.gw_name = f"sbg{n}" if gateway else None
        self.ours, self.theirs = f"sbw{n}", f"sbg{n}"
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        if gateway:
            _ip("netns", "add", self.gw_name)
            _ip(
                "link",
                "add",
                self.ours,
                "netns",
                self.name,
                "type",
                "veth",
                "peer",
                "name",
                self.theirs,
                "netns",
                self.gw_name,
            )
            _ip("-n", self.name, "addr", "add", f"{self.ADDRESS}/24", "dev", self.ours)
            _ip("-n", self.gw_name, "addr", "add", f"{self.GATEWAY}/24", "dev", self.theirs)
            _ip("-n", self.name, "link", "set", self.ours, "up")
            _ip("-n", self.gw_name, "link", "set", self.theirs, "up")
            _ip("-n", self.name, "route", "add", "default", "via", self.GATEWAY)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def gateway_link(self, up: bool) -> None:
        """The cable: the gateway's end of the veth goes down (ours loses carrier) or comes back."""
        _ip("-n", self.gw_name, "link", "set", self.theirs, "up" if up else "down")

    def silence_gateway(self) -> None:
        """The link stays up but the gateway is gone: it no longer holds its address."""
        _ip("-n", self.gw_name, "addr", "flush", "dev", self.theirs)
        _ip("-n", self.name, "neigh", "flush", "all")

    def close(self) -> None:
        for name in (self.name, self.gw_name):
            if name:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


# ------------------------------------------------------------------ the lab


class Lab:
    """One test's world: a config, stand-in services, command recorders, the watchdog."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.run_dir = tmp_path / "run"
        self.state_dir = tmp_path / "state"
        self.calls_log = tmp_path / "calls.log"
        self.config_path = tmp_path / "config.toml"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.namespaces: list[NetNs] = []
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.systemctl()

    # -------------------------------------------------------- config and commands

    def systemctl(self, restart_then: str = "") -> Path:
        """The ``systemctl`` the Lab's processes find: appends ``<verb> <args>`` to the calls log.

        After a ``restart`` it runs ``restart_then`` (a test's idea of what a restart does)."""
        path = self.bin / "systemctl"
        log = shlex.quote(str(self.calls_log))
        path.write_text(
            f'#!/bin/sh\necho "$*" >> {log}\nif [ "$1" = restart ]; then\n{restart_then or ":"}\nfi\n'
        )
        path.chmod(0o755)
        return path

    def config(self, restart_then: str = "", **tables: dict[str, Any]) -> Path:
        """Write the config: fast watchdog settings, a systemctl that records, extra tables."""
        self.systemctl(restart_then)
        body: dict[str, Any] = base_tables(self.tmp, closed_port_url())
        body["watchdog"] = {
            "check_s": 0.2,
            "stall_s": 1.5,
            "network_down_s": 3600,
            "max_rss_mb": 500,
        } | tables.pop("watchdog", {})
        body.update(tables)
        return write_config(self.config_path, body)

    def calls(self) -> list[str]:
        try:
            return self.calls_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def restarts(self) -> list[str]:
        return [line.split()[1] for line in self.calls() if line.startswith("restart ")]

    def reboots(self) -> int:
        return sum(1 for line in self.calls() if line.startswith("reboot"))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )

    # -------------------------------------------------------- processes

    def spawn(
        self, argv: list[str], log_name: str, env: dict[str, str | None] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with ``env`` added to ours (None removes a variable)."""
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"  # our systemctl first
        full = {**os.environ, "PATH": path, **(env or {})}
        with open(self.tmp / log_name, "ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in full.items() if v is not None},
            )
        self.procs.append(proc)
        return proc

    def service(self, name: str, state: str = "ok", hog_mb: int = 0) -> StandIn:
        """Start a stand-in for service ``name`` and wait for its first status file."""
        proc = self.spawn(
            [sys.executable, str(HERE), "service", str(self.run_dir), name, state, str(hog_mb)],
            f"{name}.log",
        )
        wait_for(
            lambda: (read_json(self.run_dir / f"{name}.json") or {}).get("pid") == proc.pid,
            what=f"the {name} stand-in's first status file",
        )
        return StandIn(proc)

    def netns(self, gateway: bool = False) -> NetNs:
        ns = NetNs(gateway)
        self.namespaces.append(ns)
        return ns

    def watchdog(
        self, ns: NetNs, *args: str, env: dict[str, str | None] | None = None
    ) -> WatchdogProcess:
        proc = self.spawn(
            [*ns.prefix, *CLI, "-c", str(self.config_path), "watchdog", *args], "watchdog.log", env
        )
        return WatchdogProcess(proc, self.run_dir / "watchdog.json")

    def log(self, name: str) -> str:
        return (self.tmp / name).read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        for ns in self.namespaces:
            ns.close()


class StandIn:
    """A stand-in service process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class WatchdogProcess:
    """A running ``sensor-bridge watchdog`` and its status file."""

    def __init__(self, proc: subprocess.Popen[bytes], status_path: Path) -> None:
        self.proc = proc
        self.status_path = status_path

    def status(self) -> dict[str, Any]:
        """Its latest status (this process's own, not a predecessor's), or {}."""
        body = read_json(self.status_path) or {}
        return body if body.get("pid") == self.proc.pid else {}

    def after_checks(self, n: int, timeout: float = 20.0) -> dict[str, Any]:
        """Its status once it has looked ``n`` times."""
        return wait_for(
            lambda: (s := self.status()).get("checks", 0) >= n and s, timeout, f"{n} checks"
        )

    def decisions(self, action: str | None = None) -> list[dict[str, Any]]:
        found = self.status().get("decisions", [])
        return [d for d in found if action is None or d["action"] == action]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path):
    """A Lab for the test, cleaned up after it (import ``lab_fixture`` to use ``lab``)."""
    world = Lab(tmp_path)
    yield world
    world.close()


# ------------------------------------------------------------------ the stand-in service


def _stand_in(run_dir: str, name: str, state: str, hog_mb: str) -> None:
    sys.path.insert(0, str(REPO))
    from appliance.status import write_status

    hoard = b"\x01" * (int(hog_mb) * 1_000_000)  # touched, so it counts in RSS
    deadline = time.monotonic() + 120  # never outlive a test run by much
    while time.monotonic() < deadline:
        write_status(
            run_dir, name, state, reason=f"stand-in {name}", hoard_mb=len(hoard) // 1_000_000
        )
        time.sleep(0.2)


if __name__ == "__main__" and sys.argv[1] == "service":
    _stand_in(*sys.argv[2:6])
