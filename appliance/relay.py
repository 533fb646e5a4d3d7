"""The relay service, ``sensor-bridge relay``: what devices publish -> the outbox.

A thin shell around appliance/push/: its two doors in, both parsed by
``push.parser`` (which picks the message's format from ``push.formats.FORMATS``)
into the outbox the collector's uplink drains, each message acknowledged only
after its commit (appliance/committer.py batches the commits and dead-letters
poison messages):

* MQTT (``[mqtt]``): appliance/push/mqtt_door.py, a QoS 1 subscription on a
  persistent session of the bridge's own broker.
* HTTP (``[push]``): appliance/push/http_door.py, devices set to POST; Basic
  auth, ``max_body_kb`` limit (413), 400 naming what is wrong with a malformed
  body, 2xx only after commit.

The status file ``<run_dir>/relay.json`` is rewritten every couple of seconds
with the state and its reason, broker connection, counters and the last
message time; systemd gets READY=1 and WATCHDOG=1 from the same loop
(appliance/service.py). SIGTERM commits and
acknowledges what has arrived, then disconnects.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

from .clock import clock_synchronised
from .committer import Committer, Counters
from .config import Config, config_from_args
from .device_text import printable
from .outbox import Outbox
from .push.http_door import HttpDoor
from .push.mqtt_door import MqttIn
from .push.parser import PushParser
from .push.sender import FirstSeen
from .service import Service, run_service
from .status import WRITE_EVERY_S, write_status

log = logging.getLogger("sensor-bridge.relay")

BROKER_DOWN_ERROR_S = 60.0
DEAD_RECENT_S = 600.0
STALL_ERROR_S = 60.0


class Relay(Service):
    """Everything ``sensor-bridge relay`` does, startable and stoppable from a test or a bench."""

    step_every_s = WRITE_EVERY_S

    def __init__(self, config: Config, stop_event: threading.Event | None = None) -> None:
        super().__init__(stop_event)
        self.config = config
        self.outbox = Outbox.of(config)
        devices = config.mqtt.devices if config.mqtt else []
        self.parser = PushParser(devices, config.bridge.timezone, FirstSeen(self.outbox))
        self.counters = Counters()
        self.committer = Committer(self.outbox, self.counters)
        self.mqtt = MqttIn(config, self.parser, self.committer) if config.mqtt else None
        self.time_synced = not config.bridge.require_time_sync
        self.door = (
            HttpDoor(config.push, self.parser, self.committer, lambda: self.time_synced)
            if config.push
            else None
        )
        self.inputs_started = False
        self.committer_thread: threading.Thread | None = None

    # ------------------------------------------------------------ state

    @property
    def listening(self) -> bool:
        """Whether the HTTP door takes POSTs."""
        return self.door is not None and self.door.server is not None

    def own_state(self, now: float) -> tuple[str, str]:
        """The relay's state and a one-line reason a person can act on."""
        c, m = self.committer, self.mqtt
        if c.error and c.error_since and now - c.error_since > 5:
            return "error", f"cannot write the outbox: {c.error}"
        if c.oldest_age() > STALL_ERROR_S:
            return "error", f"outbox writes stalled for {c.oldest_age():.0f}s"
        if self.door and self.door.error:
            return "error", self.door.error
        if self.outbox.reset_reason:  # until a person runs `sensor-bridge outbox ack-corrupt`
            return "error", self.outbox.reset_reason
        if not self.time_synced:
            return "starting", "waiting for the clock to be synchronised (NTP)"
        if m is not None and m.refused:
            return "error", m.last_error or "the broker refused the relay"
        if m is not None and not m.connected:
            down = now - m.down_since
            where = f"{m.mqtt.host}:{m.mqtt.port}"
            if time.time() - self.started < 10 and m.last_error is None:
                return "starting", f"connecting to the broker at {where}"
            detail = f"broker {where} unreachable for {down:.0f}s ({m.last_error or 'connecting'})"
            if down > BROKER_DOWN_ERROR_S and not self.listening:
                return "error", detail + "; devices' messages wait in the broker"
            return "degraded", detail
        if c.counters.last_dead and now - c.counters.last_dead_time < DEAD_RECENT_S:
            return (
                "degraded",
                f"{c.counters.dead_lettered} message(s) dead-lettered, latest "
                + printable(c.counters.last_dead),  # a topic and a reason devices chose
            )
        doors = [d for d, on in (("MQTT", m is not None), ("HTTP", self.listening)) if on]
        return "ok", f"receiving over {' and '.join(doors)}"

    def write_status(self) -> dict[str, Any]:
        now = time.monotonic()
        state, reason = self.own_state(now)
        c, m = self.counters, self.mqtt
        details: dict[str, Any] = {
            "reason": reason,
            "broker": None
            if m is None
            else {
                "host": m.mqtt.host,
                "port": m.mqtt.port,
                "connected": m.connected,
                "last_error": m.last_error,
            },
            "push": None
            if self.config.push is None
            else {
                "listen": self.config.push.listen,
                "listening": self.listening,
            },
            "messages_received": c.received,
            "records_stored": c.records_stored,
            "records_unchanged": c.records_unchanged,
            "dead_lettered": c.dead_lettered,
            "last_message_at": c.last_message_at,
            "last_dead_letter": c.last_dead and printable(c.last_dead),
            "waiting_for_commit": len(self.committer.pending),
            "outbox_reset": self.outbox.reset_reason,
        }
        return write_status(self.config.paths.run_dir, "relay", state, **details)

    # ------------------------------------------------------------ the service (appliance/service.py)

    def start(self) -> None:
        if self.outbox.reset_reason:
            log.error("%s", self.outbox.reset_reason)
        self.committer_thread = threading.Thread(
            target=self.committer.run, name="commit", daemon=True
        )
        self.committer_thread.start()
        if self.door:
            self.door.start()

    def step(self) -> None:
        """Wait for the clock before taking in anything; then subscribe."""
        if not self.time_synced and clock_synchronised():
            log.info("clock synchronised; relaying starts")
            self.time_synced = True
        if self.time_synced and not self.inputs_started:
            self.inputs_started = True
            if self.mqtt:
                self.mqtt.start()

    def report(self) -> str:
        body = self.write_status()
        return f"{body['state']}: {body['reason']}"

    def shutdown(self) -> None:
        log.info("stopping: committing and acknowledging what has arrived")
        if self.mqtt:
            self.mqtt.closing = True  # what arrives from now on stays in the broker for next time
        if self.door:
            self.door.stop()
        self.committer.stop()
        if self.committer_thread:
            self.committer_thread.join(timeout=30)
        if self.mqtt:
            self.mqtt.stop()  # after the acknowledgements, which go out first
        self.write_status()
        self.outbox.close()
        log.info(
            "stopped cleanly: %d message(s) received, %d record(s) stored",
            self.counters.received,
            self.counters.records_stored,
        )


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.mqtt is None and config.push is None:
        log.error("nothing to relay: the config has neither [mqtt] nor [push]")
        return 2
    # The signal handlers go in before the outbox is opened (Relay's constructor opens it).
    return run_service(lambda stop: Relay(config, stop))


def register(commands: argparse._SubParsersAction) -> None:
    relay = commands.add_parser(
        "relay", help="the relay service: MQTT and HTTP pushes from devices -> outbox"
    )
    relay.set_defaults(func=_run)
