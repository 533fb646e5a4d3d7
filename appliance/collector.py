"""The collector service, ``sensor-bridge run``: poll the cameras, run the uplink, answer /health.

A thin shell around the real parts. The ``schedule`` package starts each
sensor's polls at its interval; each sensor's polls run in its own lane, one at
a time, so a slow camera holds only its own and never delays the others; the
uplink drains the outbox in its own thread. The main loop (appliance/service.py)
only schedules, rewrites the status file every couple of seconds (its heartbeat
for the LED and the watchdog) and pings systemd, so it keeps beating whatever a
camera or the cloud API is doing.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .alerts import start_pinger
from .bridge_state import bridge_state
from .clock import clock_synchronised, now_utc, utc_text
from .config import Config, config_from_args, parse_listen
from .fleet import adoption_facts, fleet_facts, note_wanted_version
from .http_server import BoundedHandler, BoundedHTTPServer, serve
from .lanes import PollLanes
from .outbox import Outbox, OutboxFull, OutboxStats
from .service import Service, run_service
from .sources.base import source_for
from .status import WRITE_EVERY_S, health_answers_200, write_status

log = logging.getLogger("sensor-bridge.collector")

SCHEDULE_EVERY_S = 0.2  # how often due polls are started
LIMITS_EVERY_S = 60.0
# On SIGTERM, polls in flight are cut; this long at most is spent waiting for them.
STOP_POLLS_GRACE_S = 3.0
DISK_FULL_MB = (
    0.1  # less free than this on the state directory is a full disk, whatever writes still fit
)
# A health check sends a few hundred bytes at once; a client slower than this is not one.
HEALTH_DEADLINE_S = 5.0
# A sensor's polls due at the same tick are stored in one outbox commit when the last ends, and a
# commit waits this long at most for the other sensors' batches of the round to join it (one
# fsync, each page written once): the sensors' polls start together, so most of a round shares one.
GROUP_COMMIT_S = 0.5
# A batch that began this recently belongs to the round: a commit waits (GROUP_COMMIT_S at most)
# for it to store, so the round's slower cameras join one more commit, not one each. A camera
# slower than this (one trickling until its deadline) is not waited for.
ROUND_S = 2.0
# Deliveries are written with the next poll round's transaction: held one interval and this much,
# and never longer than MAX_HOLD_S (a power cut then means that much sent again, counted once).
HOLD_SLACK_S = 5.0
MAX_HOLD_S = 90.0
# The heartbeat thread looks this often for the first status and for a change of state; a
# state that flaps sends one heartbeat per HEARTBEAT_MIN_GAP_S at most.
HEARTBEAT_LOOK_S = 0.5
HEARTBEAT_MIN_GAP_S = 5.0


@dataclass
class SensorHealth:
    """What the bridge knows about one sensor: the seed's "verify all sensors reporting"."""

    id: str
    state: str = "unknown"  # ok | failing | unknown
    last_success: str | None = None
    last_error: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # kind -> why its last poll failed
    note: str | None = None  # e.g. "found at a new address ..." (appliance/discover/identity.py)

    def record(
        self, kind: str, ok: bool, error: str | None, at: str, note: str | None = None
    ) -> str | None:
        """Note one poll; returns a log line only when what is wrong with the sensor changed."""
        self.note = note
        before = set(self.errors.values())
        if ok:
            self.last_success = at
            self.errors.pop(kind, None)
        else:
            self.errors[kind] = error or "failed"
            self.last_error = f"{kind}: {error}"
        self.state = "failing" if self.errors else "ok"
        after = set(self.errors.values())
        if after == before:
            return None
        if not after:
            return f"sensor {self.id} is reporting again"
        if after <= before:
            return None  # one kind recovered, the rest still fails the same way
        return f"sensor {self.id} failing: {self.last_error}"

    def contract(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "last_success": self.last_success,
            "last_error": self.last_error,
            **({"note": self.note} if self.note else {}),
        }


def mem_used_pct() -> float | None:
    """Memory in use, as psutil counts it ((total - available) / total), read from /proc/meminfo."""
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path("/proc/meminfo").read_text().splitlines()
            if ":" in line
        )
        total, available = (int(fields[name].split()[0]) for name in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return None
    return round(100 * (total - available) / total, 1) if total else None


def host_facts(state_dir: str) -> dict[str, Any]:
    """The heartbeat's ``host`` object (disk, memory, temperature, load)."""
    try:
        disk_free = shutil.disk_usage(state_dir).free // 1_000_000
    except OSError:
        disk_free = None
    try:
        milli = int(Path("/sys/class/thermal/thermal_zone0/temp").read_text())
        temp: float | None = round(milli / 1000, 1)
    except (OSError, ValueError):
        temp = None
    return {
        "disk_free_mb": disk_free,
        "mem_used_pct": mem_used_pct(),
        "cpu_temp_c": temp,
        "load1": round(os.getloadavg()[0], 2),
    }


class Collector(Service):
    """Everything ``sensor-bridge run`` does, startable and stoppable from a test or the demo."""

    step_every_s = SCHEDULE_EVERY_S

    def __init__(self, config: Config, stop_event: threading.Event | None = None) -> None:
        from .uplink import Uplink

        super().__init__(stop_event)
        self.config = config
        self.outbox = Outbox.of(config)
        self.uplink = Uplink(config, self.outbox)
        self.pollers = {
            s.id: source_for(s, self.outbox) for s in config.sensors
        }  # sources/__init__.py
        self.sensors = {s.id: SensorHealth(s.id) for s in config.sensors}
        self.lanes = PollLanes(list(self.pollers), self._guarded_poll, self._stored_together)
        self.outbox.group_with(lambda: self.lanes.polling(ROUND_S), GROUP_COMMIT_S)
        # The cloud's confirmations wait for the next poll round's transaction (pages written once).
        every = [s for poller in self.pollers.values() for _, s in poller.schedule()]
        if every:
            self.outbox.hold_deliveries(min(min(every) + HOLD_SLACK_S, MAX_HOLD_S))
        self.time_synced = not config.bridge.require_time_sync
        self.waiting_for_clock = False  # said so in the log already
        self.last_collection: str | None = None
        self.dropped_at_start = self.outbox.counter("dropped")
        self.last_drop_time: float | None = None
        self.health_server: BoundedHTTPServer | None = None
        self.health_error: str | None = None
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self.scheduler: Any = None
        self.next_limits = self.next_room_check = 0.0
        self.uplink_thread: threading.Thread | None = None

    # ------------------------------------------------------------ polling

    def _poll(self, sensor_id: str, kind: str) -> None:
        outcome = self.pollers[sensor_id].poll(kind)
        with self._lock:
            line = self.sensors[sensor_id].record(
                kind, outcome.ok, outcome.error, utc_text(outcome.at), outcome.note
            )
            if outcome.ok:
                self.last_collection = utc_text(outcome.at)
        if line:
            (log.info if outcome.ok else log.warning)("%s", line)

    def submit_poll(self, sensor_id: str, kind: str) -> None:
        """Queue a poll in the sensor's lane; skipped (and counted) while the same one waits or runs."""
        if not self.time_synced or self.stop_event.is_set():
            return
        self.lanes.submit(sensor_id, kind)

    def _guarded_poll(self, sensor_id: str, kind: str) -> None:
        try:
            self._poll(sensor_id, kind)
        except Exception:  # a bug must cost one poll, not the service
            if not self.stop_event.is_set():  # a poll cut by shutdown may find the outbox closed
                log.exception("poll of %s %s crashed", sensor_id, kind)

    @contextmanager
    def _stored_together(self, sensor_id: str, kinds: list[str]) -> Iterator[None]:
        """The polls of one lane's batch, stored in one outbox transaction when the last ends;
        the uplink is woken once they are on disk."""
        held = None
        try:
            with self.outbox.together() as held:
                yield
        except OutboxFull:
            # History is read again from the sensor's cursor once there is room; a snapshot
            # (a live count) is a moment that never comes back, so it counts as dropped.
            snapshots = self.pollers[sensor_id].snapshots
            self.outbox.count_lost(sum(1 for r in held.records if r.kind in snapshots))
        except Exception:
            if not self.stop_event.is_set():
                log.exception("storing the polls of %s (%s) failed", sensor_id, ", ".join(kinds))
        else:
            if held.records:
                self.uplink.wake()

    def _cut_polls(self) -> None:
        for poller in self.pollers.values():
            poller.close()

    def _schedule(self) -> Any:
        import schedule

        scheduler = schedule.Scheduler()
        for sensor_id, source in self.pollers.items():
            for kind, every in source.schedule():
                scheduler.every(every).seconds.do(self.submit_poll, sensor_id, kind)
        return scheduler

    # ------------------------------------------------------------ state

    def own_state(self, now: float) -> tuple[str, str]:
        """The collector's state and a one-line reason a person can act on."""
        uplink = self.uplink.snapshot()
        stats = self.outbox.stats()
        try:
            free_mb = shutil.disk_usage(self.config.paths.state_dir).free / 1e6
        except OSError:
            free_mb = float("inf")
        if self.outbox.disk_full or free_mb < DISK_FULL_MB:
            return "error", (
                f"disk full: {self.config.paths.state_dir} has no room for readings;"
                f" {stats.pending} pending kept, {stats.dropped} dropped so far"
            )
        damage = self.outbox.reset_reason
        if damage:
            return "error", damage
        if not self.time_synced:
            return "starting", "waiting for the clock to be synchronised (NTP)"
        if stats.dropped > self.dropped_at_start:
            self.dropped_at_start = stats.dropped
            self.last_drop_time = now
        if self.last_drop_time and now - self.last_drop_time < 3600:
            return (
                "error",
                f"{stats.dropped} undelivered readings dropped (outbox limits, or no room on the disk)",
            )
        if free_mb < self.config.outbox.min_free_disk_mb:
            return "error", f"disk nearly full: {free_mb:.0f} MB free"
        if uplink["state"] == "error":
            return "error", f"uplink: {uplink['last_error']}"
        sensors = list(self.sensors.values())
        failing = [s for s in sensors if s.state == "failing"]
        if sensors and len(failing) == len(sensors):
            return "error", f"no sensor reachable ({failing[0].id}: {failing[0].last_error})"
        if sensors and all(s.state == "unknown" for s in sensors):
            return "starting", "waiting for the first poll"
        if failing:
            names = ", ".join(s.id for s in failing)
            return "degraded", f"{len(failing)} of {len(sensors)} sensors failing: {names}"
        if uplink["state"] != "ok":
            return "degraded", f"uplink retrying, readings buffered: {uplink['last_error']}"
        if self.health_error:
            return "degraded", self.health_error
        return "ok", "all sensors polled, outbox draining"

    def snapshot(self) -> dict[str, Any]:
        """Everything status, /health and the heartbeat report (never a secret)."""
        now = time.time()
        own, reason = self.own_state(now)
        bridge = bridge_state(
            self.config, own=("collector", own, reason), started=self.started, now=now
        )
        with self._lock:
            sensors = [s.contract() for s in self.sensors.values()]
            last_collection = self.last_collection
        return {
            "state": own,
            "reason": reason,
            "bridge_state": bridge.state,
            "bridge_reason": bridge.reason,
            "services": {name: service.state for name, service in bridge.services.items()},
            "bridge_id": self.config.bridge.id,
            "version": __version__,
            "uptime_s": round(now - self.started),
            "time_synced": self.time_synced,
            "last_collection": last_collection,
            "sensors": sensors,
            "outbox": self.outbox.stats(now).__dict__,
            "outbox_reset": self.outbox.reset_reason,
            "uplink": self.uplink.snapshot(),
            "health": {"listen": self.config.health.listen, "error": self.health_error},
        }

    def heartbeat_body(self, snap: dict[str, Any]) -> dict[str, Any]:
        """The heartbeat (docs/ingest-contract.md) from a :meth:`snapshot`."""
        return {
            "schema": "sensor-bridge/heartbeat/v1",
            "bridge_id": self.config.bridge.id,
            "version": __version__,
            "sent_at": utc_text(now_utc()),
            "uptime_s": snap["uptime_s"],
            "state": snap["bridge_state"],
            "outbox": OutboxStats(**snap["outbox"]).contract(),
            "sensors": snap["sensors"],
            "host": host_facts(self.config.paths.state_dir),
            **fleet_facts(),  # optional: WireGuard public key, last update (appliance/update.py)
            # an adopted bridge's config source and version (appliance/adoption/)
            **adoption_facts(self.config.paths.state_dir, self.config.source_path),
        }

    def write_status(self) -> dict[str, Any]:
        snap = self.snapshot()
        with self._lock:
            self._status = snap
        details = {k: v for k, v in snap.items() if k != "state"}
        write_status(self.config.paths.run_dir, "collector", snap["state"], **details)
        return snap

    def health(self) -> tuple[int, dict[str, Any]]:
        """/health: 200 while the bridge is ok, degraded or starting; 503 otherwise."""
        with self._lock:
            snap = dict(self._status)
        if not snap:  # asked before the first status is written: starting is a 200 (the contract)
            return 200, {
                "status": "starting",
                "bridge_id": self.config.bridge.id,
                "version": __version__,
                "uptime": round(time.time() - self.started),
                "last_collection": None,
            }
        body = self.heartbeat_body(snap)
        body.update(
            status=snap["bridge_state"],
            uptime=snap["uptime_s"],
            last_collection=snap["last_collection"],
            reason=snap["bridge_reason"],
            services=snap["services"],
            uplink={k: snap["uplink"].get(k) for k in ("state", "last_success", "last_error")},
        )
        code = 200 if health_answers_200(snap["bridge_state"]) else 503
        return code, body

    # ------------------------------------------------------------ threads

    def _serve_health(self) -> None:
        """Answer /health; a port already taken leaves /health off, never the readings."""
        listen = self.config.health.listen
        if not listen:
            return
        collector = self

        class Handler(BoundedHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/health":
                    self.send_json(404, {"error": "only /health lives here"})
                    return
                self.send_json(*collector.health())

            do_HEAD = do_GET  # noqa: N815

        try:
            self.health_server = serve(
                parse_listen(listen), Handler, "health", deadline_s=HEALTH_DEADLINE_S
            )
        except OSError as exc:
            self.health_error = (
                f"cannot listen on {listen} ([health] listen): {exc.strerror}; /health is off"
            )
            log.error("%s; readings are still collected and delivered", self.health_error)
            return
        log.info("health endpoint on http://%s/health", listen)

    def _heartbeats(self) -> None:
        """The first heartbeat at start, then one every heartbeat_s and one whenever the state changes.

        Not only after heartbeat_s: the fleet page would call a bridge that
        has just started "never heard from" until then, and "starting" for as
        long again after its first poll went well.
        """
        sent_state, sent_at = None, -math.inf
        while not self.stop_event.wait(HEARTBEAT_LOOK_S):
            with self._lock:
                snap = dict(self._status)
            if not snap:  # the first status is written a moment after start (Service.run)
                continue
            since = time.monotonic() - sent_at
            # An adopted bridge's config outcome (applied, rolled_back) goes out as soon as known.
            said = (snap["bridge_state"], self._adoption_said())
            changed = said != sent_state and since >= HEARTBEAT_MIN_GAP_S
            if not changed and since < self.config.uplink.heartbeat_s:
                continue
            sent_state, sent_at = said, time.monotonic()
            try:
                if self.uplink.send_heartbeat(self.heartbeat_body(snap)) and self.config.fleet:
                    note_wanted_version(self.config.paths.state_dir, self.uplink.heartbeat_answer)
            except Exception:
                log.exception("heartbeat failed")

    def _adoption_said(self) -> Any:
        return adoption_facts(self.config.paths.state_dir, self.config.source_path).get("config")

    # ------------------------------------------------------------ the service (appliance/service.py)

    def start(self) -> None:
        if self.outbox.reset_reason:
            log.error("%s", self.outbox.reset_reason)
        self._serve_health()
        self.uplink_thread = threading.Thread(
            target=self.uplink.run, args=(self.stop_event,), name="uplink", daemon=True
        )
        self.uplink_thread.start()
        if self.config.uplink.heartbeat_url:
            threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        start_pinger(
            self.config.alerts, lambda: self._status, self.stop_event
        )  # appliance/alerts.py
        log.info(
            "collector up: %d sensor(s), delivering to %s",
            len(self.config.sensors),
            self.config.uplink.url,
        )

    def step(self) -> float:
        """Start the polls that are due; now and then, the outbox's limits."""
        now = time.time()
        if not self.time_synced:
            self._wait_for_the_clock()
        # The kinds of a sensor due at this tick start as one batch (one outbox transaction).
        with self.lanes.submitting():
            if self.time_synced and self.scheduler is None:
                self.scheduler = self._schedule()
                self.scheduler.run_all()
            if self.scheduler is not None:
                self.scheduler.run_pending()
        # On a full disk, look for room again every few seconds (it flushes lost counts).
        if now >= self.next_limits or (self.outbox.disk_full and now >= self.next_room_check):
            self.next_limits, self.next_room_check = now + LIMITS_EVERY_S, now + WRITE_EVERY_S
            self._housekeeping()
        return SCHEDULE_EVERY_S

    def _wait_for_the_clock(self) -> None:
        """Poll only once NTP has set the clock; say once when the wait starts and once when it ends."""
        if clock_synchronised():
            log.info("clock synchronised; polling starts")
            self.time_synced = True
        elif not self.waiting_for_clock:
            log.warning(
                "waiting for the clock to be synchronised (NTP) before polling;"
                " `timedatectl` shows why it is not (allow UDP 123 out of the store network)"
            )
            self.waiting_for_clock = True

    def report(self) -> str | None:
        snap = self._guarded(self.write_status)
        return f"{snap['state']}: {snap['reason']}" if snap else None

    def _housekeeping(self) -> None:
        """Shed what the limits say; on a full disk, look for room again (it flushes lost counts)."""
        if self.outbox.disk_full and not self.outbox.check_room():
            return
        self._guarded(self.outbox.enforce_limits)

    def _guarded(self, chore: Any) -> Any:
        """A disk or database fault costs one round of ``chore``, never the service."""
        try:
            return chore()
        except (sqlite3.Error, OSError) as exc:
            log.error("%s failed: %s", getattr(chore, "__name__", "chore"), exc)
            return None

    def shutdown(self) -> None:
        log.info("stopping: cutting in-flight polls, waiting for the current batch")
        stuck = self.lanes.close(STOP_POLLS_GRACE_S, self._cut_polls)
        if stuck:
            log.warning("left behind stuck polls of %s", ", ".join(stuck))
        if self.uplink_thread:
            self.uplink_thread.join(timeout=self.config.uplink.timeout_s + 5)
        if self.health_server:
            self.health_server.shutdown()
            self.health_server.server_close()
        self.outbox.close()
        log.info("stopped cleanly")


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    return run_service(lambda stop: Collector(config, stop))


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="the collector service: poll sensors, deliver, serve /health"
    )
    run.set_defaults(func=_run)
