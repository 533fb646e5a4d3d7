"""The watchdog service (``sensor-bridge watchdog``): heal what a restart or a reboot can heal.

Every ``[watchdog] check_s`` it reads the status file of each service the config
enables, the processes' memory, and the network, and escalates:

* a service whose status file has not advanced for ``stall_s`` (stopped, hung,
  SIGSTOPped) or whose process holds more than ``max_rss_mb``: log the reason and
  run ``restart_cmd``; still stalled ``stall_s`` after that restart: ``reboot_cmd``;
* no default route, its link down, or its gateway silent for ``network_down_s``:
  reboot (a Pi's WiFi sometimes only comes back after one).

It never reboots for what a reboot cannot fix: the cloud API failing, a sensor
switched off, a full disk (that turns its own state to error). Reboots are capped
at ``max_reboots`` per ``reboot_window_s``, counted in a file in the state dir
that outlives the reboots, so the bridge can never boot-loop: past the cap it
only restarts services. During maintenance, or while the config file is
invalid (a restart cannot fix a config), it acts on nothing. Every decision and
its reason goes to the log and to ``watchdog.json`` in the run dir.

The same process drives the status LED (appliance/led.py) whenever
``sensor-bridge config enabled led`` would say yes (an LED backend, or no
valid config to show): both only read status files, and one Python process
instead of two saves a Pi Zero 2 W about 25 MB. The LED keeps its own status
file (``led.json``) and stays apart from the collector and the relay, so it
keeps telling the truth when they hang; a hang of this one loop stops both
heartbeats, and systemd restarts the unit.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .config import Config, ConfigWatch
from .led import LOOK_EVERY_S, LedService
from .maintenance import maintenance_active
from .records import now_utc, utc_text
from .service import Service, run_service
from .status import (
    STALE_AFTER_S,
    UNITS,
    WRITE_EVERY_S,
    read_json,
    read_status,
    write_json_atomic,
    write_status,
)

log = logging.getLogger("sensor-bridge.watchdog")

BUDGET_FILE = "watchdog-reboots.json"
RECENT_DECISIONS = 20
COMMAND_TIMEOUT_S = 300.0  # a restart_cmd still running after this is killed


# ------------------------------------------------------------------ the network


@dataclass
class NetworkState:
    up: bool
    detail: str


class NetworkProbe:
    """Is the way out there: a default route whose link is up and whose gateway answers?

    It reads the kernel's tables of the network namespace it runs in
    (``/proc/net/route``, ``/sys/class/net``, ``/proc/net/arp``). To learn whether
    the gateway is there it sends it one empty UDP datagram (discard port 9),
    which makes the kernel resolve or re-confirm the gateway's MAC address, and
    then reads the ARP table: a router answers ARP whatever its firewall does.
    Nothing else leaves the box; the cloud API is none of its business.
    """

    RTF_UP, RTF_GATEWAY = 0x1, 0x2
    ATF_COM, ATF_PERM = 0x2, 0x4

    def __init__(
        self, proc_net: str = "/proc/net", sys_net: str = "/sys/class/net", wait_s: float = 1.0
    ) -> None:
        self.proc_net = Path(proc_net)
        self.sys_net = Path(sys_net)
        self.wait_s = wait_s

    def check(self) -> NetworkState:
        routes = self.default_routes()
        if not routes:
            return NetworkState(False, "no default route (link down or no DHCP lease)")
        problems = []
        for iface, gateway in routes:
            link = self.operstate(iface)
            if link not in ("up", "unknown"):  # "unknown": drivers (tun, some WiFi) that do not say
                problems.append(f"link {iface} is {link}")
            elif gateway is None:
                return NetworkState(True, f"default route on {iface}, link up")
            elif self.gateway_answers(iface, gateway):
                return NetworkState(True, f"gateway {gateway} on {iface} answers")
            else:
                problems.append(f"gateway {gateway} on {iface} does not answer")
        return NetworkState(False, "; ".join(problems))

    def default_routes(self) -> list[tuple[str, str | None]]:
        """``(interface, gateway or None)`` of every IPv4 default route that is up."""
        routes = []
        try:
            lines = (self.proc_net / "route").read_text().splitlines()[1:]
        except OSError:
            return []
        for line in lines:
            f = line.split()
            if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
                continue
            flags = int(f[3], 16)
            if not flags & self.RTF_UP:
                continue
            gateway = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
            routes.append((f[0], gateway if flags & self.RTF_GATEWAY else None))
        return routes

    def operstate(self, iface: str) -> str:
        try:
            return (self.sys_net / iface / "operstate").read_text().strip()
        except OSError:
            return "missing"

    def gateway_answers(self, iface: str, gateway: str) -> bool:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"", (gateway, 9))
        except OSError:
            pass  # no route or a full queue: the ARP table still tells
        deadline = time.monotonic() + self.wait_s
        while True:
            if self.arp_flags(iface, gateway) & (self.ATF_COM | self.ATF_PERM):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def arp_flags(self, iface: str, address: str) -> int:
        try:
            lines = (self.proc_net / "arp").read_text().splitlines()[1:]
        except OSError:
            return 0
        for line in lines:
            f = line.split()
            if len(f) >= 6 and f[0] == address and f[5] == iface:
                return int(f[2], 16)
        return 0


class CommandProbe:
    """A site's own network check (``watchdog --network-probe CMD``): exit status 0 means up.

    For a demo or a test on a machine whose gateway must not be probed, or a
    network where a better test exists. A command that cannot run at all
    judges nothing: the network counts as up (a typo must not reboot the box).
    """

    def __init__(self, command: str) -> None:
        self.command = command

    def check(self) -> NetworkState:
        try:
            result = subprocess.run(
                shlex.split(self.command),
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return NetworkState(
                True, f"network probe {self.command!r} cannot run ({exc}); not judging"
            )
        said = (result.stdout.strip() or result.stderr.strip()).splitlines()[-1:]
        detail = f"network probe {self.command!r} exited {result.returncode}" + (
            f": {said[0]}" if said else ""
        )
        return NetworkState(result.returncode == 0, detail)


# ------------------------------------------------------------------ the reboot budget


class RebootBudget:
    """At most ``max_reboots`` per ``window_s``, counted in a JSON file that outlives reboots.

    A reboot is written down before it is asked for, so one that kills the
    watchdog mid-way still counts. A Pi has no RTC: after a reboot its clock may
    be off until NTP sets it, so a reboot stamped in the future also counts
    (unless it is more than a window ahead, which only a broken clock explains).
    With ``persist=False`` (a dry run) it counts in memory only.
    """

    def __init__(self, path: Path, persist: bool = True) -> None:
        self.path = path
        self.persist = persist
        self._memory = self._load()

    def _load(self) -> list[dict[str, Any]]:
        body = read_json(self.path) or {}
        reboots = body.get("reboots")
        if not isinstance(reboots, list):
            return []
        return [r for r in reboots if isinstance(r, dict) and isinstance(r.get("at"), int | float)]

    def used(self, window_s: float, now: float) -> list[dict[str, Any]]:
        reboots = self._load() if self.persist else self._memory
        return [r for r in reboots if abs(now - r["at"]) < window_s]

    def spend(self, window_s: float, now: float, reason: str) -> None:
        """Write the reboot down; raises OSError when it cannot be (then do not reboot)."""
        kept = self.used(window_s, now)
        kept.append({"at": now, "at_utc": utc_text(now_utc()), "reason": reason})
        if self.persist:
            write_json_atomic(self.path, {"reboots": kept})
        self._memory = kept


# ------------------------------------------------------------------ one watched service


class ServiceWatch:
    """One service the config enables: when its status file last advanced, how far healing went."""

    def __init__(self, service: str, now: float) -> None:
        self.service = service
        self.unit = UNITS[service]
        self.written_at: Any = None
        self.advanced = now  # monotonic; a service gets stall_s from when we first look
        self.restarted: float | None = None  # monotonic time of our last restart of it
        self.rss_mb: float | None = None
        self.pid: int | None = None

    def problem(
        self, status: dict[str, Any] | None, now: float, stall_s: float, max_rss_mb: float
    ) -> str | None:
        """Why this service counts as stalled now, or None when it is fine."""
        written = status.get("written_at") if status else None
        if written is not None and written != self.written_at:
            self.written_at, self.advanced = written, now
        silent = now - self.advanced
        if silent >= stall_s:
            what = "has no status file" if status is None else "has not written its status"
            return f"{self.service} {what} for {silent:.0f} s (stall_s = {stall_s:g})"
        self.pid = status.get("pid") if status else None
        self.rss_mb = _rss_mb(self.pid) if silent < STALE_AFTER_S else None
        if self.rss_mb is not None and self.rss_mb > max_rss_mb:
            return (
                f"{self.service} (pid {self.pid}) uses {self.rss_mb:.0f} MB of memory "
                f"(max_rss_mb = {max_rss_mb:g})"
            )
        return None

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "pid": self.pid,
            "silent_s": round(now - self.advanced, 1),
            "rss_mb": None if self.rss_mb is None else round(self.rss_mb, 1),
            "restarted_s_ago": None if self.restarted is None else round(now - self.restarted, 1),
        }


def _rss_mb(pid: Any) -> float | None:
    """The process's resident memory in MB, as psutil (and ``ps``) count it; None when it is gone."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / 1e6
    except (psutil.Error, OSError):
        return None


# ------------------------------------------------------------------ the watchdog


class Watchdog(Service):
    """Looks every check_s, decides, acts (or only says what it would do in a dry run)."""

    def __init__(
        self,
        watch: ConfigWatch,
        dry_run: bool = False,
        probe: NetworkProbe | CommandProbe | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        super().__init__(stop_event)
        self.watch = watch
        self.dry_run = dry_run
        self.probe = probe or NetworkProbe()
        self.decisions: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.services: dict[str, ServiceWatch] = {}
        self.network: NetworkState | None = None
        self.network_down_since: float | None = None
        self.budget: RebootBudget | None = None
        self.commands: list[tuple[subprocess.Popen[bytes], str, float]] = []
        self.state, self.reason = "starting", "first check pending"
        self.refused = False  # a reboot was refused (budget spent) and its cause is still there
        self.checks = 0
        self.facts: dict[str, Any] = {}
        self.next_check = 0.0
        self.said_ready = False

    # -------------------------------------------------------- deciding

    def check(self) -> None:
        """One look at everything, and whatever action it calls for."""
        now = time.monotonic()
        self.checks += 1
        config = self.watch.poll()
        if config is None:
            problems = self.watch.problems or []
            self._quiet()
            self._set(
                "no-config", f"config {self.watch.path}: {'; '.join(problems)} (acting on nothing)"
            )
            return
        w = config.watchdog
        maintenance = maintenance_active(config)
        self.facts["maintenance"] = maintenance
        if maintenance:
            self._quiet()
            self._set(
                "maintenance", f"maintenance on until {maintenance['until']} by {maintenance['by']}"
            )
            return
        budget_path = Path(config.paths.state_dir) / BUDGET_FILE
        if self.budget is None or self.budget.path != budget_path:
            self.budget = RebootBudget(budget_path, persist=not self.dry_run)

        problems: list[str] = []
        reboot_for: list[tuple[ServiceWatch | None, str]] = []
        self._look_at_services(config, now, problems, reboot_for)
        self._look_at_network(config, now, problems, reboot_for)
        if reboot_for:
            self._reboot(config, reboot_for, now)
        if not problems:
            self.refused = False
        self.facts["reboots_in_window"] = len(self.budget.used(w.reboot_window_s, time.time()))
        self.facts["max_reboots"] = w.max_reboots
        self.facts["reboot_window_s"] = w.reboot_window_s
        disk = self._disk_problem(config)
        if disk:
            self._set("error", f"{disk}; a reboot would not free space")
        elif self.refused:
            self._set("error", f"{problems[0]}; reboot budget spent, only restarting services")
        elif problems:
            self._set("degraded", "; ".join(problems))
        else:
            assert self.network is not None
            self._set("ok", f"{len(self.services)} service(s) fresh, {self.network.detail}")

    def _look_at_services(
        self,
        config: Config,
        now: float,
        problems: list[str],
        reboot_for: list[tuple[ServiceWatch | None, str]],
    ) -> None:
        """Restart a stalled service; one still stalled stall_s after its restart asks for a reboot."""
        w = config.watchdog
        # Not itself, nor the LED it drives: that one's file goes stale only with its own.
        enabled = [s for s in config.enabled_services() if UNITS[s] != UNITS["watchdog"]]
        self.services = {s: self.services.get(s) or ServiceWatch(s, now) for s in enabled}
        for sw in self.services.values():
            problem = sw.problem(
                read_status(config.paths.run_dir, sw.service), now, w.stall_s, w.max_rss_mb
            )
            if problem is None:
                if (
                    sw.restarted is not None and sw.advanced > sw.restarted
                ):  # written since the restart
                    sw.restarted = None
                    self._decide("recovered", sw.unit, f"{sw.service} is healthy again")
                continue
            problems.append(problem)
            if sw.restarted is None:
                self._restart(config, sw, problem, now)
            elif now - sw.restarted >= w.stall_s:
                reboot_for.append(
                    (sw, f"{problem}, still {now - sw.restarted:.0f} s after a restart")
                )

    def _look_at_network(
        self,
        config: Config,
        now: float,
        problems: list[str],
        reboot_for: list[tuple[ServiceWatch | None, str]],
    ) -> None:
        """A network down for network_down_s asks for a reboot."""
        self.network = self.probe.check()
        if self.network.up:
            if self.network_down_since is not None:
                self._decide("recovered", None, f"network back: {self.network.detail}")
            self.network_down_since = None
            return
        if self.network_down_since is None:
            self.network_down_since = now
            self._decide("noticed", None, f"network down: {self.network.detail}")
        down = now - self.network_down_since
        problems.append(f"network down for {down:.0f} s: {self.network.detail}")
        limit = config.watchdog.network_down_s
        if down >= limit:
            reboot_for.append(
                (
                    None,
                    f"network down for {down:.0f} s (network_down_s = {limit:g}): {self.network.detail}",
                )
            )

    def _restart(self, config: Config, sw: ServiceWatch, reason: str, now: float) -> None:
        self._decide("restart", sw.unit, reason)
        self._run(config.watchdog.restart_cmd, sw.unit)
        sw.restarted = sw.advanced = now  # it gets another stall_s to come back

    def _reboot(
        self, config: Config, causes: list[tuple[ServiceWatch | None, str]], now: float
    ) -> None:
        w = config.watchdog
        reason = "; ".join(text for _, text in causes)
        assert self.budget is not None
        used = self.budget.used(w.reboot_window_s, time.time())
        if not w.reboot:
            refusal = "rebooting is off (watchdog.reboot = false)"
        elif len(used) >= w.max_reboots:
            self.refused = True
            refusal = (
                f"reboot budget spent: {len(used)} reboot(s) in the last {w.reboot_window_s:g} s "
                f"(max_reboots = {w.max_reboots})"
            )
        else:
            try:
                self.budget.spend(w.reboot_window_s, time.time(), reason)
            except OSError as exc:
                refusal = f"cannot count the reboot in {self.budget.path} ({exc.strerror})"
            else:
                self._decide("reboot", None, reason)
                self._run(w.reboot_cmd, None)
                self._quiet()  # if the box is still up after this, start over as if rebooted
                return
        self._decide("no-reboot", None, f"{reason}; {refusal}")
        for sw, text in causes:
            if sw:
                self._restart(config, sw, text, now)
            else:
                self.network_down_since = now  # wait another network_down_s before asking again

    def _quiet(self) -> None:
        """Forget what was seen: after maintenance, a config fix or a reboot, start watching afresh."""
        self.services = {}
        self.network_down_since = None
        self.refused = False

    def _disk_problem(self, config: Config) -> str | None:
        where = Path(config.paths.state_dir)
        while (
            not where.exists() and where != where.parent
        ):  # not created yet: its disk all the same
            where = where.parent
        try:
            free_mb = shutil.disk_usage(where).free / 1e6
        except OSError:
            return None
        self.facts["disk_free_mb"] = round(free_mb)
        if free_mb >= config.outbox.min_free_disk_mb:
            return None
        return (
            f"disk nearly full: {free_mb:.0f} MB free for {config.paths.state_dir} "
            f"(outbox.min_free_disk_mb = {config.outbox.min_free_disk_mb:g})"
        )

    def _set(self, state: str, reason: str) -> None:
        if state != self.state:
            log.log(
                logging.INFO if state in ("ok", "maintenance") else logging.WARNING,
                "%s: %s",
                state,
                reason,
            )
        self.state, self.reason = state, reason

    def _decide(self, action: str, unit: str | None, reason: str) -> None:
        self.decisions.append(
            {
                "at": utc_text(now_utc()),
                "action": action,
                "unit": unit,
                "reason": reason,
                "dry_run": self.dry_run,
            }
        )
        what = f"{action} {unit}" if unit else action
        if self.dry_run and action in ("restart", "reboot"):
            what = f"dry run, would {what}"
        log.log(
            logging.INFO if action in ("recovered", "noticed") else logging.WARNING,
            "%s: %s",
            what,
            reason,
        )

    # -------------------------------------------------------- acting

    def _run(self, template: str, unit: str | None) -> None:
        """Start ``restart_cmd``/``reboot_cmd`` without waiting: the loop must keep pinging systemd."""
        argv = [arg.replace("{unit}", unit or "") for arg in shlex.split(template)]
        if self.dry_run:
            return
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self._decide("failed", unit, f"cannot run {template!r}: {exc}")
            return
        self.commands.append((proc, shlex.join(argv), time.monotonic()))

    def reap(self) -> None:
        """Note how started commands ended; kill one that hangs."""
        still = []
        for proc, command, started in self.commands:
            code = proc.poll()
            if code is None and time.monotonic() - started > COMMAND_TIMEOUT_S:
                proc.kill()
                code = proc.wait()
            if code is None:
                still.append((proc, command, started))
            elif code != 0:
                self._decide("failed", None, f"{command!r} exited with status {code}")
        self.commands = still

    # -------------------------------------------------------- reporting

    def write_status(self) -> None:
        now = time.monotonic()
        network = None
        if self.network:
            down = (
                None if self.network_down_since is None else round(now - self.network_down_since, 1)
            )
            network = {"up": self.network.up, "detail": self.network.detail, "down_for_s": down}
        write_status(
            self.watch.paths.run_dir,
            "watchdog",
            self.state,
            reason=self.reason,
            dry_run=self.dry_run,
            checks=self.checks,
            decisions=list(self.decisions),
            network=network,
            services={s: sw.describe(now) for s, sw in self.services.items()},
            config_problems=self.watch.problems,
            **self.facts,
        )

    # -------------------------------------------------------- the loop (appliance/service.py)

    def step(self) -> float:
        """Check every check_s (every 2 s without a valid config, to notice the fix soon); reap always."""
        if time.monotonic() >= self.next_check:
            self.check()
            check_s = self.watch.config.watchdog.check_s if not self.watch.problems else 2.0
            self.next_check = time.monotonic() + check_s
            self.report_due = True  # every look shows in watchdog.json at once
        self.reap()
        return max(0.0, min(WRITE_EVERY_S, self.next_check - time.monotonic()))

    def report(self) -> str:
        self.write_status()
        if not self.said_ready:
            self.said_ready = True
            log.info(
                "watching%s: %s",
                " (dry run: acting on nothing)" if self.dry_run else "",
                self.reason,
            )
        return f"{self.state}: {self.reason}"


# ------------------------------------------------------------------ the watchdog and the LED, one loop


class WatchdogAndLed(Service):
    """``sensor-bridge watchdog``: the watchdog's looks, and the LED's whenever the config wants an LED."""

    def __init__(self, watchdog: Watchdog, stop_event: threading.Event | None = None) -> None:
        super().__init__(stop_event)
        self.watchdog = watchdog
        self.led = LedService(watchdog.watch, self.stop_event)
        self.led.started = self.started
        self.led_on = False
        self.next_watchdog = self.next_led = 0.0

    def led_wanted(self) -> bool:
        """What ``config enabled led`` says: an LED backend, or no valid config (shown as no-config)."""
        config = self.led.watch.poll()
        return config is None or "led" in config.enabled_services()

    def start(self) -> None:
        self.watchdog.start()

    def step(self) -> float:
        now = time.monotonic()
        if now >= self.next_watchdog:
            self.next_watchdog = now + self.watchdog._step()
        if now >= self.next_led:
            self.next_led = now + LOOK_EVERY_S
            self._step_led()
        self.report_due = self.report_due or self.watchdog.report_due or self.led.report_due
        return max(0.0, min(self.next_watchdog, self.next_led) - time.monotonic())

    def _step_led(self) -> None:
        wanted = self.led_wanted()
        if wanted:
            self.led.step()
        elif self.led_on:  # the config dropped its LED: let go of the pins, stop writing led.json
            self.led.shutdown()
            self.led.light = self.led.light_for = None
            log.info("the config has no LED any more; not driving one")
        self.led_on = wanted

    def report(self) -> str:
        self.watchdog.report_due = self.led.report_due = False
        line = self.watchdog.report()
        if self.led_on:
            line = f"{line}; LED {self.led.report()}"
        return line

    def shutdown(self) -> None:
        self.watchdog.shutdown()
        self.led.shutdown()


# ------------------------------------------------------------------ commands


def _watchdog(args: argparse.Namespace) -> int:
    probe = CommandProbe(args.network_probe) if args.network_probe else None

    def make(stop: threading.Event) -> WatchdogAndLed:
        return WatchdogAndLed(Watchdog(ConfigWatch(args.config), args.dry_run, probe, stop), stop)

    return run_service(make)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "watchdog",
        help="the watchdog service: restart stalled services, reboot when only that helps;"
        " it also drives the status LED when the config has one",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="log and report decisions, act on none"
    )
    parser.add_argument(
        "--network-probe",
        metavar="CMD",
        help="judge the network by CMD's exit status (0: up) instead of the default route's gateway",
    )
    parser.set_defaults(func=_watchdog)
