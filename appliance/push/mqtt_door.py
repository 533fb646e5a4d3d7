"""The relay's MQTT door: a subscription on the bridge's own broker -> the commit batcher.

A QoS 1 subscription on a persistent session (MQTT 5, fixed client id, clean
start off, session kept while the relay is away), so what devices publish while
the relay is down waits in the broker. A message is acknowledged only after its
records are committed (paho's manual ack, run as the message's ``done`` by
appliance/committer.py): a crash in between makes the broker deliver it again,
and the outbox recognises a record it already has. Paho reconnects with backoff
(1 s up to 30 s). Payloads are parsed by parser.py.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from ..broker_files import relay_password
from ..committer import Committer, Incoming
from ..config import Config
from .parser import PushParser

log = logging.getLogger("sensor-bridge.relay")  # its lines are the relay's, as before the split

# Unacknowledged messages the broker may have in flight to us; above BATCH_MAX so batches fill.
RECEIVE_MAXIMUM = 2000
SESSION_EXPIRY_S = 0xFFFFFFFF  # MQTT 5: keep our session (and its queue) however long we are away


class _NoTls:
    """What paho's socket code names of ``ssl`` when the relay runs without OpenSSL."""

    class SSLWantReadError(OSError):
        """Never raised: without TLS there is no TLS record to wait for."""

    class SSLWantWriteError(OSError):
        """Never raised, as above."""


def _without_tls(mqtt: Any) -> None:
    """Let paho's plain-socket reads and writes fail as they should when ``ssl`` was never loaded.

    The relay runs without OpenSSL (cli.KEPT_OUT; ~4.5 MB). paho then sets its ``ssl`` to
    None, but its recv/send still name ``ssl.SSLWantReadError`` in their ``except`` clauses, so a
    broker that drops the connection would surface as AttributeError instead of a reconnect.
    """
    if mqtt.ssl is None:
        mqtt.ssl = _NoTls


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

        _without_tls(mqtt)
        if not self.password:
            self.last_error = "no password for the relay's broker user: set [mqtt] password, or run `sensor-bridge mqtt setup`"
            self.refused = True
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.mqtt.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
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
        client.connect_async(
            self.mqtt.host, self.mqtt.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client = client
        client.loop_start()
        log.info(
            "subscribing to %s on %s:%d as %s",
            ", ".join(self.mqtt.topics),
            self.mqtt.host,
            self.mqtt.port,
            self.mqtt.username,
        )

    def _on_connect(
        self, client: Any, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the login of {self.mqtt.username}: {reason}"
            self.refused = reason.value in (
                0x86,
                0x87,
                0x8C,
            )  # bad credentials, not authorised, bad auth
            log.error("%s", self.last_error)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.generation += 1
        self.connected, self.refused, self.last_error = True, False, None
        log.info(
            "connected to the broker (session %s)", "resumed" if flags.session_present else "new"
        )
        # Retained messages only on a new subscription, not again on every reconnect.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.mqtt.topics])

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self.last_error = "cannot connect (refused or unreachable)"

    def _on_subscribe(
        self, _client: Any, _userdata: Any, _mid: int, reasons: list[Any], _props: Any
    ) -> None:
        refused = [
            f"{topic} ({code})"
            for topic, code in zip(self.mqtt.topics, reasons, strict=False)
            if code.is_failure
        ]
        if refused:
            self.refused = True
            self.last_error = f"broker refused the subscription to {', '.join(refused)}: check the ACL (`sensor-bridge mqtt setup`)"
            log.error("%s", self.last_error)

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
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
        parsed = self.parser.parse(
            message.payload, source="mqtt", topic=topic, origin=topic, received_at=datetime.now(UTC)
        )  # never raises: bad input is dead-lettered
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
