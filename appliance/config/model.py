"""The whole file's shape: :class:`Config`, one field per table, and the bridge's own tables.

Each part declares its table beside itself (``led_table.py``, ``remote_table.py``,
``update_table.py``, ``watchdog_table.py``, ``alerts_table.py``,
``relay_tables.py``; a sensor family's ``[[sensors]]`` table beside its source,
found through ``sources.SOURCES``) and registers it here with one line in
:class:`Config`. The tables that belong to the bridge as a whole (``[bridge]``,
``[paths]``, ``[uplink]``, ``[outbox]``, ``[health]``) are declared below.
Nothing here imports a service, a poller or the outbox: every service reads
the file, the watchdog too.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..alerts_table import AlertsConfig
from ..config_keys import (
    REQUIRED,
    Key,
    check_listen,
    check_url,
    check_zone,
    flag,
    key_field,
    number,
    secret,
    show,
    table,
    tables,
    text,
)
from ..fleet_table import FleetConfig
from ..led_table import LedConfig
from ..relay_tables import MqttConfig, PushConfig
from ..remote_table import RemoteConfig
from ..sources import sensor_models
from ..sources.table import SensorConfig
from ..update_table import UpdateConfig
from ..watchdog_table import WatchdogConfig

MAX_SENSORS = 200
_BRIDGE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _bridge_id(bridge_id: str) -> str | None:
    # The id travels in every batch and heartbeat and names the bridge on the fleet page and in
    # alerts: a short plain name, safe in any file, header or message it reaches.
    if _BRIDGE_ID.fullmatch(bridge_id):
        return None
    return f"expected 1 to 64 letters, digits, '.', '_' or '-', got {bridge_id!r}"


def system_timezone() -> str:
    """The machine's own IANA zone name, or UTC when it cannot be told."""
    try:
        name = Path("/etc/timezone").read_text().strip()
        ZoneInfo(name)
        return name
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        target = os.readlink("/etc/localtime")
        name = target.split("zoneinfo/", 1)[1]
        ZoneInfo(name)
        return name
    except (OSError, IndexError, ZoneInfoNotFoundError, ValueError):
        return "UTC"


@dataclass
class BridgeConfig:
    id: str = text(
        socket.gethostname,
        "the bridge's id in the cloud (`bridge_id` of the ingest contract): "
        "1 to 64 letters, digits, `.`, `_`, `-`",
        check=_bridge_id,
        shown="the hostname",
    )
    timezone: str = text(
        system_timezone,
        "default zone for sensors that do not set one, and for pushed reports that name none",
        check=check_zone,
        shown="the system's zone",
    )
    require_time_sync: bool = flag(
        True, "hold stamping readings until the clock is NTP-synced (a Pi has no real-time clock)"
    )


@dataclass
class PathsConfig:
    state_dir: str = text(
        "/var/lib/sensor-bridge", "the outbox database, cursors, watchdog memory, maintenance mode"
    )
    run_dir: str = text("/run/sensor-bridge", "the services' status files")


_CLOUD_URL = check_url(("https", "http"), "the API key goes in api_key")
# Where the cloud app takes heartbeats (docs/ingest-contract.md), beside the ingest endpoint.
HEARTBEAT_PATH = "/api/bridge/v1/heartbeat"
MIN_KEY_CHARS = 8
# Words of a placeholder (no 43-character random key holds one by chance), and what docs write.
_KEY_WORDS = re.compile(r"your[-_]?(api[-_]?)?key|placeholder|example|\.\.\.|<|>", re.IGNORECASE)
_ADD_BRIDGE = "`cloud/bin/add-bridge` prints the bridge's key (sbk_ and 43 characters)"


def _api_key(key: str) -> str | None:
    """Why ``key`` is obviously not a bridge's key, never quoting it (it may be a real one)."""
    if not key:
        return None  # left out: the reader says it is required
    if any(c.isspace() for c in key):
        return f"holds a space: a key is one word; {_ADD_BRIDGE}"
    if len(key) < MIN_KEY_CHARS:
        return f"{len(key)} characters is too short for a key; {_ADD_BRIDGE}"
    if _KEY_WORDS.search(key) or len(set(key)) == 1:
        return f"a placeholder, not a key; {_ADD_BRIDGE}"
    return None


def heartbeat_url_for(url: str) -> str:
    """The heartbeat address of the cloud at ``url``: same origin, the contract's path."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.netloc}{HEARTBEAT_PATH}" if parts.scheme and parts.netloc else ""
    )


def _read_heartbeat_url(t: Any, name: str, default: Any) -> str | None:
    """The key as written (``""``: heartbeats off), or None when left out: derived from ``url``."""
    value = t.table(name)
    if value is not None and not isinstance(value, str):
        t.problems.append(f"{t.key(name)}: expected a string, got {show(value)}")
        return ""
    return value


@dataclass
class UplinkConfig:
    url: str = text(
        REQUIRED,
        "the cloud's ingest endpoint, `https://` or `http://`, "
        "e.g. `https://example.vercel.app/api/bridge/v1/ingest`",
        check=_CLOUD_URL,
    )
    api_key: str = secret(
        "the bridge's key (`cloud/bin/add-bridge` prints it); not a placeholder, "
        f"at least {MIN_KEY_CHARS} characters, no spaces",
        required=True,
        check=_api_key,
    )
    heartbeat_url: str = key_field(
        Key(
            "where heartbeats go; left out, the uplink's origin with the contract's path; "
            '`""`: none are sent',
            _read_heartbeat_url,
            _CLOUD_URL,
            shown=f"`url`'s origin + `{HEARTBEAT_PATH}`",
        ),
        None,
    )
    heartbeat_s: float = number(60, "seconds between heartbeats")
    batch_size: int = number(500, "most records per batch", minimum=1, integer=True)
    timeout_s: float = number(15, "one request's time limit")
    gzip: bool = flag(True, "compress batches")
    verify_tls: bool = flag(True, "check the cloud's TLS certificate")

    def __post_init__(self) -> None:
        if self.heartbeat_url is None:  # left out: heartbeats on, to the cloud readings go to
            self.heartbeat_url = heartbeat_url_for(self.url)


@dataclass
class OutboxConfig:
    max_mb: float = number(
        256,
        "the outbox's size cap; beyond it the oldest readings are shed, counted and reported",
        minimum=1,
    )
    min_free_disk_mb: float = number(
        200,
        "with less free disk than this, shed junk, then delivered readings, then the oldest undelivered ones (as far as the outbox can make up the shortfall)",
    )


@dataclass
class HealthConfig:
    listen: str = text(
        "0.0.0.0:8080", '`host:port` of `GET /health`; `""` turns it off', check=check_listen
    )


@dataclass(kw_only=True)
class Config:
    """The whole file: one field per table, in the order the reference lists them."""

    bridge: BridgeConfig = table(BridgeConfig)
    paths: PathsConfig = table(PathsConfig)
    # Read before [uplink]: with [fleet] alone the bridge is waiting to be claimed (adoption).
    fleet: FleetConfig | None = table(
        FleetConfig, optional="adopt the bridge into a fleet: enroll, be claimed, get the config"
    )
    uplink: UplinkConfig = table(
        UplinkConfig, required="where readings are delivered", unless="fleet"
    )
    outbox: OutboxConfig = table(OutboxConfig)
    health: HealthConfig = table(HealthConfig)
    sensors: list[SensorConfig] = tables(
        SensorConfig,
        "No sensors is valid: a bridge may only relay what devices push.",
        limit=MAX_SENSORS,
        unique="id",
        each="sensor",
        by_type=sensor_models,
    )
    mqtt: MqttConfig | None = table(MqttConfig, optional="the relay; absent = relay off")
    push: PushConfig | None = table(PushConfig, optional="an HTTP receiver for devices set to POST")
    watchdog: WatchdogConfig = table(WatchdogConfig)
    led: LedConfig = table(LedConfig)
    alerts: AlertsConfig = table(AlertsConfig)
    update: UpdateConfig = table(UpdateConfig)
    remote: RemoteConfig | None = table(
        RemoteConfig, optional="a WireGuard tunnel for SSH from the admin network"
    )
    source_path: str | None = None

    @property
    def outbox_path(self) -> Path:
        return Path(self.paths.state_dir) / "outbox.db"

    def sensor(self, sensor_id: str) -> SensorConfig:
        for sensor in self.sensors:
            if sensor.id == sensor_id:
                return sensor
        known = ", ".join(s.id for s in self.sensors) or "none configured"
        raise KeyError(f"no sensor {sensor_id!r} in the config (known: {known})")

    @property
    def waiting_for_the_cloud(self) -> bool:
        """[fleet] alone: the bridge enrolls and waits to be claimed; no collector runs yet."""
        return self.uplink is None

    def enabled_services(self) -> list[str]:
        """Services this config turns on (their status files must be fresh)."""
        if self.waiting_for_the_cloud:
            services = ["fleet", "watchdog"]
            return services + (["led"] if self.led.backend != "none" else [])
        services = ["collector", "watchdog"]
        if self.fleet:
            services.append("fleet")
        if self.mqtt or self.push:
            services.append("relay")
        if self.led.backend != "none":
            services.append("led")
        return services
