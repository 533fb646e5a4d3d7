"""The relay service, ``sensor-bridge relay``: what devices publish -> the outbox.

Two doors in, both parsed by ``sources.milesight_push`` into the outbox the
collector's uplink drains:

* MQTT (``[mqtt]``): a QoS 1 subscription on a persistent session (MQTT 5,
  fixed client id, clean start off, session kept while the relay is away), so
  what devices publish while the relay is down waits in the broker. A message
  is acknowledged only after its records are committed (paho's manual ack): a
  crash in between makes the broker deliver it again, and the outbox
  recognises a record it already has. Paho reconnects with backoff (1 s up to
  30 s).
* HTTP (``[push]``): devices set to POST; Basic auth, ``max_body_kb`` limit
  (413), 400 naming what is wrong with a malformed body, 2xx only after commit.

Messages are committed in batches (up to 500 messages, or what arrived within
50 ms), because every commit is an fsync; a batch's acknowledgements follow
its commit. Unreadable messages, and messages with readings the cloud would
refuse, go to the dead-letter table (they are acknowledged too: they were kept,
and redelivery would not make them readable). Only an outbox that cannot be
written at all (disk full, I/O error, locked too long) holds messages back for
a retry; a message the outbox refuses for any other reason is dead-lettered on
its own, so the messages behind it are stored.

The status file ``<run_dir>/relay.json`` is rewritten every couple of seconds
with the state and its reason, broker connection, counters and the last
message time; systemd gets READY=1 and WATCHDOG=1 from the same loop
(appliance/service.py). SIGTERM commits and
acknowledges what has arrived, then disconnects.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .broker import relay_password
from .clock import clock_synchronised
from .config import Config, config_from_args, parse_listen
from .http_server import BoundedHandler, BoundedHTTPServer, serve
from .outbox import DeadEntry, Outbox, PutResult
from .records import utc_text
from .service import Service, run_service
from .sources.milesight_push import FirstSeen, Parsed, PushParser
from .status import WRITE_EVERY_S, write_status

log = logging.getLogger("sensor-bridge.relay")

BATCH_MAX = 500
BATCH_WAIT_S = 0.05
# Unacknowledged messages the broker may have in flight to us; above BATCH_MAX so batches fill.
RECEIVE_MAXIMUM = 2000
SESSION_EXPIRY_S = 0xFFFFFFFF  # MQTT 5: keep our session (and its queue) however long we are away
HTTP_COMMIT_WAIT_S = 30.0
BROKER_DOWN_ERROR_S = 60.0
DEAD_RECENT_S = 600.0
STALL_ERROR_S = 60.0
DISCARD_MAX = 8 * 1024 * 1024  # a bigger refused body is not read at all: the connection just closes
# The whole POST must arrive within this: 512 KB ([push] max_body_kb's default) in 10 s needs
# ~50 KB/s, a tenth of a poor Wi-Fi link; a device slower than that is stuck, not sending.
PUSH_DEADLINE_S = 10.0


@dataclass
class Incoming:
    """One parsed message waiting for its commit; ``done`` runs after it (ack, HTTP reply)."""

    parsed: Parsed
    done: Callable[[PutResult | None, str | None], None] | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Counters:
    received: int = 0
    records_stored: int = 0
    records_unchanged: int = 0
    dead_lettered: int = 0
    last_message_at: str | None = None
    last_dead: str | None = None
    last_dead_time: float = 0.0


class Committer:
    """Turns arriving messages into outbox transactions, then runs each message's ``done``."""

    def __init__(self, outbox: Outbox, counters: Counters) -> None:
        self.outbox = outbox
        self.counters = counters
        self.pending: list[Incoming] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.stopped = threading.Event()  # cuts a retry pause short at shutdown
        self.error: str | None = None
        self.error_since: float | None = None

    def add(self, item: Incoming) -> None:
        with self.cond:
            self.pending.append(item)
            if len(self.pending) == 1 or len(self.pending) >= BATCH_MAX:
                self.cond.notify()

    def oldest_age(self) -> float:
        with self.cond:
            return time.monotonic() - self.pending[0].at if self.pending else 0.0

    def run(self) -> None:
        """Commit batches until stopped and nothing is left."""
        backoff = 0.5
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait(1.0)
                if not self.pending:
                    return
                deadline = self.pending[0].at + BATCH_WAIT_S
                while len(self.pending) < BATCH_MAX and not self.stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                batch, self.pending = self.pending[:BATCH_MAX], self.pending[BATCH_MAX:]
            waiting = self.commit(batch)
            if not waiting:
                backoff = 0.5
            else:
                with self.cond:
                    self.pending[:0] = waiting  # keep them first in line; nothing was acknowledged
                self.stopped.wait(backoff)  # new arrivals do not shorten it: the outbox needs time
                backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        """Commit what is waiting, then let :meth:`run` return."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.stopped.set()

    def commit(self, batch: list[Incoming]) -> list[Incoming]:
        """Commit ``batch`` and run each message's ``done``; returns the messages that must wait
        because the outbox cannot be written at all (disk full, I/O error, locked too long).

        Any other failure is one message's fault: the batch is then committed message by
        message, and a message that still fails is dead-lettered with the reason and answered
        (acknowledged: it was kept), so the messages behind it are stored, never blocked."""
        try:
            result = self._put(batch)
        except Exception as exc:
            if outbox_unwritable(exc):
                return self._cannot_write(batch, exc)
            log.warning("committing %d message(s) failed (%s: %s); committing them one by one",
                        len(batch), type(exc).__name__, exc)
            return self._one_by_one(batch)
        self._wrote()
        for item in batch:
            if item.done:
                item.done(result, None)
        return []

    def _one_by_one(self, batch: list[Incoming]) -> list[Incoming]:
        for index, item in enumerate(batch):
            try:
                result = self._put([item])
            except Exception as exc:
                if outbox_unwritable(exc):
                    return self._cannot_write(batch[index:], exc)
                try:
                    result = self._dead_letter(item, exc)
                except Exception as again:
                    if outbox_unwritable(again):
                        return self._cannot_write(batch[index:], again)
                    # Not even its dead letter fits: answering beats redelivering it forever.
                    log.error("dropped a message from %s that cannot be kept (%s): %s",
                              item.parsed.origin, again, item.parsed.preview[:200])
                    result = PutResult()
            self._wrote()
            if item.done:
                item.done(result, None)
        return []

    def _dead_letter(self, item: Incoming, exc: Exception) -> PutResult:
        """Keep the message that cannot be stored as a dead letter instead of its records."""
        parsed = item.parsed
        reason = f"cannot be stored ({type(exc).__name__}: {exc})"
        parsed.records, parsed.cursors = [], []
        parsed.dead = [DeadEntry(parsed.origin or "relay", reason, parsed.preview)]
        return self._put([item])

    def _put(self, items: list[Incoming]) -> PutResult:
        """One outbox transaction for ``items``; the counters follow what it kept."""
        records = [r for item in items for r in item.parsed.records]
        cursors = [c for item in items for c in item.parsed.cursors]
        dead = [d for item in items for d in item.parsed.dead]
        result = self.outbox.put(records, cursors=cursors, dead=dead)
        c = self.counters
        c.received += len(items)
        c.records_stored += result.added + result.updated
        c.records_unchanged += result.unchanged + result.ignored_final
        c.last_message_at = utc_text(datetime.now(UTC))
        if dead or result.refused:
            c.dead_lettered += len(dead) + result.refused
            last = dead[-1] if dead else None
            c.last_dead = f"{last.origin}: {last.reason}" if last else "a reading the cloud would refuse"
            c.last_dead_time = time.monotonic()
            for entry in dead:
                log.warning("dead-lettered a message from %s: %s", entry.origin, entry.reason)
        return result

    def _wrote(self) -> None:
        if self.error:
            log.info("outbox writable again")
        self.error = self.error_since = None

    def _cannot_write(self, waiting: list[Incoming], exc: Exception) -> list[Incoming]:
        """The outbox cannot be written: keep ``waiting`` for a retry, and say so."""
        if self.error is None:
            log.error("cannot commit %d message(s) to the outbox: %s", len(waiting), exc)
            self.error_since = time.monotonic()
        self.error = f"{type(exc).__name__}: {exc}"
        if self.stopping and self.error_since and time.monotonic() - self.error_since > 10:
            for item in waiting:  # shutting down: give up; unacknowledged MQTT messages come back
                if item.done:
                    item.done(None, self.error)
            return []
        return waiting


def outbox_unwritable(exc: BaseException) -> bool:
    """The outbox file cannot be written at all (disk full, I/O error, locked too long, damaged),
    as opposed to one message the outbox cannot take: only this is worth waiting for."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError):
        return True
    return type(exc) is sqlite3.DatabaseError  # "database disk image is malformed"


class MqttIn:
    """The subscription on the local broker: persistent session, QoS 1, manual ack."""

    def __init__(self, config: Config, parser: PushParser, committer: Committer) -> None:
        self.mqtt = config.mqtt
        assert self.mqtt is not None
        self.parser = parser
        self.committer = committer
        self.password = relay_password(self.mqtt)
        self.client: Any = None
        self.connected = False
        self.generation = 0
        self.closing = False
        self.last_error: str | None = None
        self.refused = False  # the broker said no to our login or subscription: a config problem
        self.down_since = time.monotonic()

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if not self.password:
            self.last_error = (
                "no password for the relay's broker user: set [mqtt] password, or run `sensor-bridge mqtt setup`"
            )
            self.refused = True
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.mqtt.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        client.username_pw_set(self.mqtt.username, self.password)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=30, clean_start=False,
                             properties=properties)
        self.client = client
        client.loop_start()
        log.info("subscribing to %s on %s:%d as %s", ", ".join(self.mqtt.topics), self.mqtt.host,
                 self.mqtt.port, self.mqtt.username)

    def _on_connect(self, client: Any, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the login of {self.mqtt.username}: {reason}"
            self.refused = reason.value in (0x86, 0x87, 0x8C)  # bad credentials, not authorised, bad auth
            log.error("%s", self.last_error)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.generation += 1
        self.connected, self.refused, self.last_error = True, False, None
        log.info("connected to the broker (session %s)", "resumed" if flags.session_present else "new")
        # Retained messages only on a new subscription, not again on every reconnect.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.mqtt.topics])

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self.last_error = "cannot connect (refused or unreachable)"

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        refused = [f"{topic} ({code})" for topic, code in zip(self.mqtt.topics, reasons, strict=False)
                   if code.is_failure]
        if refused:
            self.refused = True
            self.last_error = f"broker refused the subscription to {', '.join(refused)}: check the ACL (`sensor-bridge mqtt setup`)"
            log.error("%s", self.last_error)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.connected:
            self.down_since = time.monotonic()
            if not self.closing:
                self.last_error = f"connection to the broker lost: {reason}"
                log.warning("%s; reconnecting", self.last_error)
        self.connected = False

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if self.closing:
            return  # not acknowledged: the broker keeps it for our next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        parsed = self.parser.parse(message.payload, source="mqtt", topic=topic, origin=topic,
                                   received_at=datetime.now(UTC))  # never raises: bad input is dead-lettered
        done = None
        if message.qos > 0:
            mid, qos, generation = message.mid, message.qos, self.generation
            done = lambda result, error: self._ack(mid, qos, generation, error)  # noqa: E731
        self.committer.add(Incoming(parsed, done))

    def _ack(self, mid: int, qos: int, generation: int, error: str | None) -> None:
        # A message from an earlier connection is redelivered on this one and acknowledged then.
        if error is None and generation == self.generation and self.connected:
            self.client.ack(mid, qos)

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


class PushHandler(BoundedHandler):
    """One device POST: auth, size, parse, commit, answer."""

    server_version = "sensor-bridge-push"
    methods = ("POST",)
    relay: Relay  # set on the subclass :meth:`Relay._serve_push` makes

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        relay = self.relay
        push = relay.config.push
        assert push is not None
        if not relay.push_authorised(self.headers.get("Authorization", "")):
            self.send_json(401, {"error": "wrong or missing username/password ([push] username, password)"},
                           {"WWW-Authenticate": 'Basic realm="sensor-bridge"'})
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_json(411, {"error": "send the body with a Content-Length"})
            return
        length = self.content_length()
        if length is None:
            return
        limit = push.max_body_kb * 1024
        if length > limit:
            self._discard(length)
            self.send_json(413, {"error": f"body of {length} bytes is over the limit of {push.max_body_kb} KB "
                                          "([push] max_body_kb)"})
            return
        body = self.read_body(length)
        if body is None:
            return
        code, answer = relay.receive_http(body, self.path, self.client_address[0])
        self.send_json(code, answer, {"Retry-After": "10"} if code == 503 else None)

    def _discard(self, length: int) -> None:
        """Read a refused body so the device hears the 413 instead of a reset connection."""
        left = length if length <= DISCARD_MAX else 0
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except TimeoutError:
            pass  # the deadline: answer what we know

    def do_GET(self) -> None:  # noqa: N802
        self.send_json(405, {"error": "devices POST their reports here"}, {"Allow": "POST"})

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815


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
        self.http: BoundedHTTPServer | None = None
        self.http_error: str | None = None
        self.time_synced = not config.bridge.require_time_sync
        self.inputs_started = False
        self.committer_thread: threading.Thread | None = None

    # ------------------------------------------------------------ HTTP push

    def push_authorised(self, header: str) -> bool:
        push = self.config.push
        scheme, _, encoded = header.partition(" ")
        if push is None or scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), push.username.encode()) & hmac.compare_digest(
            password.encode(), push.password.encode()
        )

    def receive_http(self, body: bytes, path: str, client: str) -> tuple[int, dict[str, Any]]:
        """Parse and commit one POST body; the status code and JSON answer for the device."""
        if not self.time_synced:
            return 503, {"error": "the bridge's clock is not synchronised yet; retry shortly"}
        route = path.split("?", 1)[0].strip("/")
        parsed = self.parser.parse(body, source="http-push", topic=route, origin=f"http-push {client} /{route}",
                                   received_at=datetime.now(UTC))
        finished = threading.Event()
        outcome: dict[str, Any] = {}

        def done(result: PutResult | None, error: str | None) -> None:
            outcome.update(result=result, error=error)
            finished.set()

        self.committer.add(Incoming(parsed, done))
        if not finished.wait(HTTP_COMMIT_WAIT_S) or outcome.get("error"):
            return 503, {"error": "the bridge cannot store readings right now; retry later"}
        if parsed.dead:
            return 400, {"error": parsed.dead[0].reason}
        return 200, {"stored": len(parsed.records)}

    def _serve_push(self) -> None:
        push = self.config.push
        if push is None:
            return

        class Handler(PushHandler):
            relay = self

        try:
            self.http = serve(parse_listen(push.listen), Handler, "push", deadline_s=PUSH_DEADLINE_S)
        except OSError as exc:
            self.http_error = f"cannot listen on {push.listen} ([push] listen): {exc.strerror}"
            log.error("%s", self.http_error)
            return
        log.info("receiving HTTP pushes on http://%s/", push.listen)

    # ------------------------------------------------------------ state

    def own_state(self, now: float) -> tuple[str, str]:
        """The relay's state and a one-line reason a person can act on."""
        c, m = self.committer, self.mqtt
        if c.error and c.error_since and now - c.error_since > 5:
            return "error", f"cannot write the outbox: {c.error}"
        if c.oldest_age() > STALL_ERROR_S:
            return "error", f"outbox writes stalled for {c.oldest_age():.0f}s"
        if self.http_error:
            return "error", self.http_error
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
            if down > BROKER_DOWN_ERROR_S and self.http is None:
                return "error", detail + "; devices' messages wait in the broker"
            return "degraded", detail
        if c.counters.last_dead and now - c.counters.last_dead_time < DEAD_RECENT_S:
            return "degraded", f"{c.counters.dead_lettered} message(s) dead-lettered, latest {c.counters.last_dead}"
        doors = [d for d, on in (("MQTT", m is not None), ("HTTP", self.http is not None)) if on]
        return "ok", f"receiving over {' and '.join(doors)}"

    def write_status(self) -> dict[str, Any]:
        now = time.monotonic()
        state, reason = self.own_state(now)
        c, m = self.counters, self.mqtt
        details: dict[str, Any] = {
            "reason": reason,
            "broker": None if m is None else {
                "host": m.mqtt.host, "port": m.mqtt.port, "connected": m.connected, "last_error": m.last_error,
            },
            "push": None if self.config.push is None else {
                "listen": self.config.push.listen, "listening": self.http is not None,
            },
            "messages_received": c.received,
            "records_stored": c.records_stored,
            "records_unchanged": c.records_unchanged,
            "dead_lettered": c.dead_lettered,
            "last_message_at": c.last_message_at,
            "last_dead_letter": c.last_dead,
            "waiting_for_commit": len(self.committer.pending),
            "outbox_reset": self.outbox.reset_reason,
        }
        return write_status(self.config.paths.run_dir, "relay", state, **details)

    # ------------------------------------------------------------ the service (appliance/service.py)

    def start(self) -> None:
        if self.outbox.reset_reason:
            log.error("%s", self.outbox.reset_reason)
        self.committer_thread = threading.Thread(target=self.committer.run, name="commit", daemon=True)
        self.committer_thread.start()
        self._serve_push()

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
        if self.http:
            self.http.shutdown()
            self.http.server_close()
        self.committer.stop()
        if self.committer_thread:
            self.committer_thread.join(timeout=30)
        if self.mqtt:
            self.mqtt.stop()  # after the acknowledgements, which go out first
        self.write_status()
        self.outbox.close()
        log.info("stopped cleanly: %d message(s) received, %d record(s) stored",
                 self.counters.received, self.counters.records_stored)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.mqtt is None and config.push is None:
        log.error("nothing to relay: the config has neither [mqtt] nor [push]")
        return 2
    # The signal handlers go in before the outbox is opened (Relay's constructor opens it).
    return run_service(lambda stop: Relay(config, stop))


def register(commands: argparse._SubParsersAction) -> None:
    relay = commands.add_parser("relay", help="the relay service: MQTT and HTTP pushes from devices -> outbox")
    relay.set_defaults(func=_run)
