"""A store LAN in network namespaces, for the discovery tests (root only; CI runs as root).

``StoreLan`` builds, under a random prefix: a switch namespace holding a
Linux bridge, the bridge's namespace ("pi", its LAN port named eth0, a dummy
``wg0`` with a neighbour on it that a scan must never list;
a veth pair where the kernel has no dummy driver), one namespace
per simulated camera on the LAN, and a router to a second, routed subnet
with its own camera. Addresses are the documentation ranges 198.51.100.0/24
(the LAN), 203.0.113.0/24 (the routed subnet) and 198.18.0.0/24 (wg0): they
exist only inside these namespaces, and multicast stays there (TTL 1, no
multicast routing). ``close()`` deletes every namespace, which removes
their links too; the fixture calls it in ``finally``.

``Namespaced`` runs code in a namespace from this process: a worker thread
enters it (setns through libc, as Python 3.11 has no os.setns), and every
socket or thread it makes lives there, so simulated cameras and the receiver
run in-process.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import secrets
import subprocess
import threading
from collections.abc import Callable
from typing import Any

LAN = "198.51.100"
ROUTED = "203.0.113"
CLONE_NEWNET = 0x40000000


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Namespaced:
    """A worker thread inside network namespace ``name``; ``call(fn)`` runs ``fn`` there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: queue.Queue[Any] = queue.Queue()
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, args=(ready,), daemon=True)
        self.thread.start()
        problem = ready.get(timeout=10)
        if problem:
            raise problem

    def _work(self, ready: queue.Queue[BaseException | None]) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            finally:
                os.close(fd)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            ready.put(exc)
            return
        ready.put(None)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, answer = job
            try:
                answer.put((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                answer.put((False, exc))

    def call(self, fn: Callable[[], Any]) -> Any:
        answer: queue.Queue[Any] = queue.Queue()
        self.jobs.put((fn, answer))
        ok, value = answer.get(timeout=60)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self.jobs.put(None)


class StoreLan:
    """The namespaces and links described in the module docstring; ``add_camera`` plugs one in."""

    def __init__(self) -> None:
        self.prefix = f"sbd{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.workers: dict[str, Namespaced] = {}
        try:
            self.switch = self._netns("sw")
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            self.pi = self.add_host("pi", f"{LAN}.1")
            ip("-n", self.pi, "route", "add", f"{ROUTED}.0/24", "via", f"{LAN}.254")
            self._add_wg0()
            ip("-n", self.pi, "addr", "add", "198.18.0.1/24", "dev", "wg0")
            ip("-n", self.pi, "link", "set", "wg0", "up")
            # A "hub" behind the tunnel, already in the neighbour table: never to be listed.
            ip("-n", self.pi, "neigh", "add", "198.18.0.9", "lladdr", "02:00:5e:00:00:09",
               "dev", "wg0", "nud", "permanent")  # fmt: skip
            self.router = self.add_host("rt", f"{LAN}.254")
            self.routed = self._netns("r5")
            ip("-n", self.router, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
               "netns", self.routed)  # fmt: skip
            ip("-n", self.router, "addr", "add", f"{ROUTED}.1/24", "dev", "eth1")
            ip("-n", self.router, "link", "set", "eth1", "up")
            ip("netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._up(self.routed, f"{ROUTED}.5/24", gateway=f"{ROUTED}.1")
        except BaseException:
            self.close()
            raise

    def _add_wg0(self) -> None:
        """A stand-in for the WireGuard tunnel: a dummy link, or a veth pair where the kernel has
        no dummy driver (its peer, wg0-end, is skipped as well: its name starts with wg)."""
        try:
            ip("-n", self.pi, "link", "add", "wg0", "type", "dummy")
        except RuntimeError:
            ip("-n", self.pi, "link", "add", "wg0", "type", "veth", "peer", "name", "wg0-end")
            ip("-n", self.pi, "link", "set", "wg0-end", "up")

    def _netns(self, short: str) -> str:
        name = f"{self.prefix}-{short}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def _up(self, ns: str, address: str, gateway: str | None = None) -> None:
        ip("-n", ns, "addr", "add", address, "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        # Multicast leaves through eth0 only; nothing here routes it anywhere else.
        ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        if gateway:
            ip("-n", ns, "route", "add", "default", "via", gateway)

    def add_host(self, short: str, address: str) -> str:
        """A namespace with eth0 plugged into the LAN's switch at ``address`` (/24)."""
        ns = self._netns(short)
        port = f"p-{short}"
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        self._up(ns, f"{address}/24")
        return ns

    def mac(self, ns: str) -> str:
        return json.loads(ip("-n", ns, "-j", "link", "show", "eth0"))[0]["address"]

    def move(self, ns: str, old: str, new: str) -> None:
        """Give the host in ``ns`` a new LAN address (a DHCP lease that changed)."""
        ip("-n", ns, "addr", "del", f"{old}/24", "dev", "eth0")
        ip("-n", ns, "addr", "add", f"{new}/24", "dev", "eth0")

    def worker(self, ns: str) -> Namespaced:
        if ns not in self.workers:
            self.workers[ns] = Namespaced(ns)
        return self.workers[ns]

    def run(
        self, ns: str, *command: str, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        self.namespaces.clear()
