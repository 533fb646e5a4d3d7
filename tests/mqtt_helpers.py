"""Test plumbing for the relay and the broker: a real mosquitto, real devices, a real relay process.

* :class:`Mosquitto` is Debian's mosquitto on a free loopback port, configured
  the way a bridge is: ``sensor-bridge mqtt setup`` writes its listener, ACL
  and passwords into a temp broker dir, next to a main ``mosquitto.conf`` that
  mirrors Debian's (pid file, persistence, ``include_dir conf.d``). Started as
  root, mosquitto would drop to the ``mosquitto`` user and then fail to read
  files under pytest's 0700 temp dir, so the main config says ``user root``.
* :class:`Device` publishes like a Milesight sensor: paho, MQTT 3.1.1, QoS 1,
  its own client id, username and password.
* :class:`RelayProcess` is ``sensor-bridge relay`` as a subprocess, to be
  SIGKILLed or SIGTERMed.

Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, REPO, base_tables, closed_port_url, free_port, wait_for, write_config

HAVE_MOSQUITTO = all(
    shutil.which(tool) for tool in ("mosquitto", "mosquitto_passwd", "mosquitto_pub")
)
needs_mosquitto = pytest.mark.skipif(
    not HAVE_MOSQUITTO,
    reason="needs Debian's mosquitto and mosquitto-clients: apt-get install mosquitto mosquitto-clients",
)
RELAY_PASSWORD = "relay-test-password"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def relay_tables(
    tmp_path: Path, mqtt_port: int | None, push_port: int | None = None, **mqtt: Any
) -> dict[str, object]:
    """A bridge config with the relay's [mqtt] (and [push]) pointing at loopback ports."""
    tables = base_tables(tmp_path, closed_port_url())
    if mqtt_port is not None:
        tables["mqtt"] = {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "password": RELAY_PASSWORD,
            **mqtt,
        }
    if push_port is not None:
        tables["push"] = {
            "listen": f"127.0.0.1:{push_port}",
            "username": "milesight",
            "password": "push-test-password",
            "max_body_kb": 64,
        }
    return tables


@dataclass
class Login:
    """What ``mqtt add-device`` told a person to type into the device."""

    name: str
    password: str
    topic: str
    port: int


class Mosquitto:
    """A real broker in ``root`` (a stand-in for /etc/mosquitto) on ``port``."""

    def __init__(self, root: Path, config: Path, port: int) -> None:
        self.root, self.config, self.port = root, config, port
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        (root / "mosquitto.conf").write_text(
            "# Like Debian's /etc/mosquitto/mosquitto.conf, in a temp dir.\n"
            f"pid_file {root}/mosquitto.pid\n"
            "persistence true\n"
            f"persistence_location {root}/data/\n"
            f"log_dest file {root}/mosquitto.log\n"
            "user root\n"
            f"include_dir {root}/conf.d\n"
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``sensor-bridge -c CONFIG mqtt --broker-dir ROOT ARGS``."""
        done = subprocess.run(
            [*CLI, "-c", str(self.config), "mqtt", "--broker-dir", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"mqtt {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}"
            )
        return done

    def start(self) -> Mosquitto:
        assert not port_open(self.port), f"port {self.port} is taken"
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.root / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: port_open(self.port) or self.proc.poll() is not None, 10, "mosquitto to listen"
        )
        assert self.proc.poll() is None, f"mosquitto exited: {self.log()[-2000:]}"
        return self

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto saves its queues to disk first."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        wait_for(lambda: not port_open(self.port), 10, "mosquitto's port to close")

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        try:
            return (self.root / "mosquitto.log").read_text()
        except OSError:
            return ""

    def add_device(self, name: str, *extra: str) -> Login:
        out = self.cli("add-device", name, *extra).stdout
        fields = dict(re.findall(r"^\s+([A-Za-z ]+):\s+(.*)$", out, re.MULTILINE))
        return Login(
            name, fields["Password"].strip(), fields["Topic"].strip(), int(fields["Broker port"])
        )


@pytest.fixture
def broker(tmp_path: Path):
    """A running mosquitto set up by ``sensor-bridge mqtt setup`` from a config with [mqtt] and [push]."""
    if not HAVE_MOSQUITTO:
        pytest.skip(
            "needs Debian's mosquitto and mosquitto-clients: apt-get install mosquitto mosquitto-clients"
        )
    port, push_port = free_port(), free_port()
    config = write_config(tmp_path / "config.toml", relay_tables(tmp_path, port, push_port))
    server = Mosquitto(tmp_path / "mosquitto", config, port)
    server.push_port = push_port  # type: ignore[attr-defined]
    server.cli("setup", "--bind", "127.0.0.1")
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


class Device:
    """A sensor publishing like a Milesight device: paho, MQTT 3.1.1, QoS 1."""

    def __init__(
        self,
        login: Login,
        password: str | None = None,
        protocol: str = "3.1.1",
        client_id: str | None = None,
        inflight: int = 100,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or login.name, protocol=version
        )
        self.client.username_pw_set(login.name, password or login.password)
        self.client.max_inflight_messages_set(inflight)
        self.client.reconnect_delay_set(0.1, 1)
        self.login = login
        self.connected = threading.Event()
        self.refused: Any = None
        self.acks: dict[int, Any] = {}  # mid -> PUBACK reason code
        self.granted: list[Any] = []
        self.received: list[Any] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                self.refused = reason
            else:
                self.connected.set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason)
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: self.granted.extend(reasons)
        self.client.on_message = lambda _c, _u, message: self.received.append(message)
        self.client.connect_async("127.0.0.1", login.port, keepalive=10)
        self.client.loop_start()

    def wait_connected(self) -> Device:
        # Refusals right after `add-device` are fine: mosquitto reloads a moment after SIGHUP.
        wait_for(
            self.connected.is_set,
            10,
            f"{self.login.name} to connect (last refusal: {self.refused})",
        )
        return self

    def publish(self, payload: str | bytes, topic: str | None = None, qos: int = 1) -> int:
        return self.client.publish(topic or self.login.topic, payload, qos=qos).mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mosquitto_pub(
    login: Login, payload: str, topic: str | None = None, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One message the way a shell script or a device's firmware would send it."""
    return subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(login.port),
            "-i",
            login.name,
            "-u",
            login.name,
            "-P",
            password or login.password,
            "-q",
            "1",
            "-t",
            topic or login.topic,
            "-m",
            payload,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


class RelayProcess:
    """``sensor-bridge -c CONFIG relay`` as a real process."""

    def __init__(
        self, config: Path, run_dir: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.config, self.run_dir, self.log_path = config, run_dir, log
        self.env = {**os.environ, "NOTIFY_SOCKET": "", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "-c", str(self.config), "relay"],
                stdout=log,
                stderr=log,
                cwd=REPO,
                env=self.env,
            )
        return self

    def status(self) -> dict[str, Any]:
        try:
            body = json.loads((self.run_dir / "relay.json").read_text())
        except (OSError, ValueError):
            return {}
        return body if self.proc and body.get("pid") == self.proc.pid else {}

    def wait_connected(self) -> RelayProcess:
        def connected() -> bool:
            assert self.proc and self.proc.poll() is None, f"relay exited: {self.log()[-2000:]}"
            return bool((self.status().get("broker") or {}).get("connected"))

        wait_for(connected, 30, "the relay to connect to the broker")
        return self

    def wait_state(self, state: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: self.status() if self.status().get("state") == state else None,
            timeout,
            f"relay state {state} (now {self.status().get('state')}: {self.status().get('reason')})",
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class OutboxReader:
    """The outbox file read the way a person would with sqlite3: what is really on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []  # the relay has not created its tables yet
        finally:
            db.close()

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM readings")
        return rows[0][0] if rows else 0

    def readings(self) -> list[dict[str, Any]]:
        return [
            json.loads(body) for (body,) in self._query("SELECT body FROM readings ORDER BY seq")
        ]

    def revisions(self) -> list[int]:
        return [rev for (rev,) in self._query("SELECT revision FROM readings")]

    def dead(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT origin, reason, preview FROM dead_letter ORDER BY seq")
        return [{"origin": o, "reason": r, "preview": p} for o, r, p in rows]
