"""The relay service, ``sensor-bridge relay``: what devices publish -> the outbox.

Two doors in, both parsed by ``sources.milesight_push`` into the outbox the
collector's uplink drains, each message acknowledged only after its commit
(appliance/committer.py batches the commits and dead-letters poison messages):

* MQTT (``[mqtt]``): appliance/sources/mqtt_in.py, a QoS 1 subscription on a
  persistent session of the bridge's own broker.
* HTTP (``[push]``): devices set to POST; Basic auth, ``max_body_kb`` limit
  (413), 400 naming what is wrong with a malformed body, 2xx only after commit.

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
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .clock import clock_synchronised
from .committer import Committer, Counters, Incoming
from .config import Config, config_from_args, parse_listen
from .http_server import BoundedHandler, BoundedHTTPServer, serve
from .outbox import Outbox, PutResult
from .service import Service, run_service
from .sources.milesight_push import FirstSeen, PushParser
from .sources.mqtt_in import MqttIn
from .status import WRITE_EVERY_S, write_status

log = logging.getLogger("sensor-bridge.relay")

HTTP_COMMIT_WAIT_S = 30.0
BROKER_DOWN_ERROR_S = 60.0
DEAD_RECENT_S = 600.0
STALL_ERROR_S = 60.0
DISCARD_MAX = (
    8 * 1024 * 1024
)  # a bigger refused body is not read at all: the connection just closes
# The whole POST must arrive within this: 512 KB ([push] max_body_kb's default) in 10 s needs
# ~50 KB/s, a tenth of a poor Wi-Fi link; a device slower than that is stuck, not sending.
PUSH_DEADLINE_S = 10.0


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
            self.send_json(
                401,
                {"error": "wrong or missing username/password ([push] username, password)"},
                {"WWW-Authenticate": 'Basic realm="sensor-bridge"'},
            )
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
            self.send_json(
                413,
                {
                    "error": f"body of {length} bytes is over the limit of {push.max_body_kb} KB "
                    "([push] max_body_kb)"
                },
            )
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
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
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
        parsed = self.parser.parse(
            body,
            source="http-push",
            topic=route,
            origin=f"http-push {client} /{route}",
            received_at=datetime.now(UTC),
        )
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
            self.http = serve(
                parse_listen(push.listen), Handler, "push", deadline_s=PUSH_DEADLINE_S
            )
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
            return (
                "degraded",
                f"{c.counters.dead_lettered} message(s) dead-lettered, latest {c.counters.last_dead}",
            )
        doors = [d for d, on in (("MQTT", m is not None), ("HTTP", self.http is not None)) if on]
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
                "listening": self.http is not None,
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
        self.committer_thread = threading.Thread(
            target=self.committer.run, name="commit", daemon=True
        )
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
