"""The one config file (TOML, keys in docs/config.md), loaded and checked.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError`
listing every problem at once, each naming its key path (``sensors[2].url``)
and what was expected: a person fixing the file over SSH, or reading
``sensor-bridge-error.txt`` on the boot partition, sees all of it in one go.
Unknown keys are errors, because a typo must never silently turn a sensor off.
Secrets may come inline or from a ``*_file``; :func:`masked` shows a config
with every secret hidden, and :func:`mask_urls` hides the ones a URL carries
(user:password@, query-string values) wherever a URL is printed.

The dataclasses below are the whole model, with one exception: a
``[[sensors]]`` table's keys beyond ``id`` and ``type`` are its source's
(``appliance/sources/``: each ``type`` names a source class, which declares its
table). Each key states its default, its checks and its documentation once, on
its field (``text``, ``number``, ``flag``, ``secret``... from config_keys.py);
the parser and ``sensor-bridge config reference`` (the key reference in
docs/config.md) both read them. A new table is one dataclass and one line in
:class:`Config`.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import sys
import time
import tomllib
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config_keys import (
    REQUIRED,
    ConfigError,
    Key,
    Section,
    check_listen,
    check_not_empty,
    check_url,
    check_zone,
    flag,
    key_field,
    mask_urls,
    number,
    secret,
    table,
    tables,
    text,
    texts,
)
from .sources import sensor_models
from .sources.base import SensorConfig
from .status import UNITS

log = logging.getLogger("sensor-bridge.config")

DEFAULT_PATH = "/etc/sensor-bridge/config.toml"
# A store's config is a few KB (about 300 bytes a sensor): the limits stop a runaway file
# (a copied log, 10,000 generated sensors) before it costs the Pi its memory. The collector
# holds about 20 KB a sensor and the watchdog restarts it above watchdog.max_rss_mb.
MAX_CONFIG_BYTES = 256 * 1024
MAX_SENSORS = 200
MAX_MQTT_DEVICES = 500
MAX_SECRET_FILE_BYTES = 4096
RELOAD_EVERY_S = 60.0  # ConfigWatch re-reads the file this often even when it looks unchanged

T = TypeVar("T")


LORAWAN_MODELS = ("vs133", "vs135", "vs350", "vs121", "vs330", "am307", "am319", "am319-o3")


def _dev_eui(value: str) -> str | None:
    if not value or re.fullmatch(r"[0-9A-Fa-f]{16}", value.replace(":", "").replace("-", "")):
        return None
    return f"expected 16 hex digits such as 24E124136B502217, got {value!r}"


def _lorawan_model(value: str) -> str | None:
    if not value or value.lower() in LORAWAN_MODELS:
        return None
    return f"expected one of {', '.join(LORAWAN_MODELS)}, got {value!r}"


def _bcm_pin(pin: int) -> str | None:
    return None if 0 <= pin <= 27 else f"expected a BCM pin number 0..27, got {pin}"


def _read_rgb(t: _Table, name: str, default: Any) -> list[int] | None:
    rgb = t.table(name)
    if rgb is not None and (
        not isinstance(rgb, list)
        or len(rgb) != 3
        or not all(isinstance(p, int) and 0 <= p <= 27 for p in rgb)
    ):
        t.problems.append(
            f"{t.key(name)}: expected three BCM pin numbers like [17, 27, 22], got {_show(rgb)}"
        )
        return None
    return rgb


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


# ---------------------------------------------------------------- the tables


@dataclass
class BridgeConfig:
    id: str = text(
        socket.gethostname,
        "the bridge's id in the cloud (`bridge_id` of the ingest contract); not empty",
        check=check_not_empty,
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


@dataclass
class UplinkConfig:
    url: str = text(
        REQUIRED,
        "the cloud's ingest endpoint, `https://` or `http://`, "
        "e.g. `https://example.vercel.app/api/bridge/v1/ingest`",
        check=_CLOUD_URL,
    )
    api_key: str = secret("the bridge's key (`cloud/bin/add-bridge` prints it)", required=True)
    heartbeat_url: str = text("", 'where heartbeats go; `""`: none are sent', check=_CLOUD_URL)
    heartbeat_s: float = number(60, "seconds between heartbeats")
    batch_size: int = number(500, "most records per batch", minimum=1, integer=True)
    timeout_s: float = number(15, "one request's time limit")
    gzip: bool = flag(True, "compress batches")
    verify_tls: bool = flag(True, "check the cloud's TLS certificate")


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


@dataclass
class MqttDevice:
    sensor_id: str = text(REQUIRED, "the id its readings get")
    serial: str = text("", "the device's serial (`device_info.device_sn`)")
    topic: str = text("", "an MQTT topic filter (for HTTP pushes: the URL path)")
    dev_eui: str = text(
        "",
        "a LoRaWAN device's DevEUI, 16 hex digits (uplinks via a UG6x, ChirpStack or "
        "The Things Stack)",
        check=lambda v: _dev_eui(v),
    )
    model: str = text(
        "",
        "the LoRaWAN device's model, to decode its raw uplinks: "
        + ", ".join(f"`{m}`" for m in LORAWAN_MODELS),
        check=lambda v: _lorawan_model(v),
    )
    period_s: float = number(
        600,
        "a LoRaWAN counter's reporting interval: its period counts cover this "
        "long before each uplink (set it as on the device)",
        minimum=1,
    )

    def problem(self) -> str | None:
        if self.serial or self.topic or self.dev_eui:
            return None
        return "set serial, topic or dev_eui to say which device this is"


@dataclass
class MqttConfig:
    host: str = text("127.0.0.1", "the broker (the bridge's own mosquitto)")
    port: int = number(1883, "the broker's port", minimum=1, integer=True)
    username: str = text("sensor-bridge", "the relay's broker account")
    password: str = secret("the relay's broker password")
    topics: list[str] = texts(["milesight/#"], "topic filters to subscribe to")
    client_id: str = text("sensor-bridge-relay", "the relay's MQTT client id")
    devices: list[MqttDevice] = tables(
        MqttDevice,
        "Which sensor id a pushed message gets. Without a matching entry it is the message's "
        "`device_info.device_sn` (a LoRaWAN uplink's: its DevEUI), else its topic. Set `serial`, `topic`, "
        "`dev_eui` or several.",
        limit=MAX_MQTT_DEVICES,
    )


@dataclass
class PushConfig:
    listen: str = text("0.0.0.0:8090", "`host:port` devices POST to", check=check_listen)
    username: str = text("milesight", "devices authenticate with HTTP Basic")
    password: str = secret("the password devices send", required=True)
    max_body_kb: int = number(512, "largest body accepted", minimum=1, integer=True)


@dataclass
class WatchdogConfig:
    stall_s: float = number(900, "a service whose status has not advanced this long is stalled")
    check_s: float = number(10, "how often the watchdog looks")
    max_rss_mb: float = number(200, "a service using more memory is restarted", minimum=1)
    network_down_s: float = number(1800, "link or gateway gone this long -> reboot")
    reboot: bool = flag(True, "may the watchdog reboot at all")
    max_reboots: int = number(3, "reboots allowed per `reboot_window_s`", integer=True)
    reboot_window_s: float = number(21600, "the window `max_reboots` counts in")
    # Issue 19: kept only so an old card still loads; the watchdog never runs these (no command from config).
    restart_cmd: str = text(
        "systemctl restart {unit}",
        "no longer configurable: only this default is accepted; restart is a fixed action",
        check=lambda v: (
            None
            if v == "systemctl restart {unit}"
            else "no longer configurable; restart and reboot are fixed actions (docs/config.md)"
        ),
    )
    reboot_cmd: str = text(
        "systemctl reboot",
        "no longer configurable: only this default is accepted; reboot is a fixed action",
        check=lambda v: (
            None
            if v == "systemctl reboot"
            else "no longer configurable; restart and reboot are fixed actions (docs/config.md)"
        ),
    )


@dataclass
class LedConfig:
    backend: str = text(
        "gpiozero", "`gpiozero` or `none` (no LED service)", choices=("gpiozero", "none")
    )
    pin: int = number(17, "BCM number 0..27 of a single LED", integer=True, check=_bcm_pin)
    rgb: list[int] | None = key_field(
        Key("three BCM pins `[17, 27, 22]` for an RGB LED instead", _read_rgb), None
    )
    active_high: bool = flag(True, "the LED lights when its pin is high")


@dataclass
class AlertsConfig:
    ping_url: str = secret(
        "a dead man's switch URL (healthchecks.io, UptimeRobot or Better Stack heartbeat) "
        'called every `ping_s`; a secret: whoever holds it can silence the alarm; `""`: none',
        check=check_url(("https", "http"), "the token belongs in the path", hidden=True),
    )
    ping_s: float = number(60, "seconds between pings", minimum=1)


_WINDOW = re.compile(
    r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) )?([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$"
)


def _window(window: str) -> str | None:
    if not window or _WINDOW.match(window):
        return None
    return f'expected a window like "Sun 03:00-05:00" or "03:00-05:00" (every day), got {window!r}'


@dataclass
class UpdateConfig:
    url: str = text(
        "",
        "a folder of signed releases (`image/release.py` makes them): GitHub Releases or "
        'any HTTPS host; `""`: no updates',
        check=check_url(("https", "http"), "a release folder is public"),
    )
    auto: bool = flag(
        True,
        "install a new release by itself (the daily timer), inside `window` and when the "
        "release's rollout covers this bridge",
    )
    window: str = text(
        "Sun 03:00-05:00",
        "when automatic updates and OS security reboots may happen, in "
        "`bridge.timezone`: `Sun 03:00-05:00`, or `03:00-05:00` for every day",
        check=_window,
    )
    gate_s: float = number(
        180,
        "after an update every enabled service must report ok or degraded and the "
        "collector must complete a poll within this long, else the old version comes back",
    )


def _wg_key(key: str) -> str | None:
    import base64
    import binascii

    try:
        if len(base64.b64decode(key, validate=True)) == 32 and len(key) == 44:
            return None
    except (binascii.Error, ValueError):
        pass
    return f"expected a WireGuard public key (44 characters of base64, `wg pubkey` prints one), got {key!r}"


def _interface_address(address: str) -> str | None:
    try:
        ipaddress.ip_interface(address)
    except ValueError:
        return f"expected the bridge's tunnel address like 10.66.0.42/32, got {address!r}"
    return None


def _endpoint(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
        return f"expected the hub's host:port like hub.example.com:51820, got {endpoint!r}"
    return None


def _admin_networks(networks: list[str]) -> str | None:
    if not networks:
        return 'empty; list the admin network(s), e.g. ["10.66.0.1/32"]'
    for network in networks:
        try:
            net = ipaddress.ip_network(network, strict=False)
        except ValueError:
            return f"expected networks like 10.66.0.0/24, got {network!r}"
        if net.prefixlen == 0:
            # The uplink must never route through the tunnel: a dead hub would cut the data off.
            return f"{network} would send all traffic (the uplink too) through the tunnel; list the admin network only"
    return None


@dataclass
class RemoteConfig:
    address: str = text(
        REQUIRED, "the bridge's tunnel address, e.g. `10.66.0.42/32`", check=_interface_address
    )
    peer_public_key: str = text(REQUIRED, "the hub's WireGuard public key", check=_wg_key)
    endpoint: str = text(
        REQUIRED, "the hub's `host:port`, e.g. `hub.example.com:51820`", check=_endpoint
    )
    allowed_ips: list[str] = texts(
        [],
        "the admin network(s) that reach the bridge (SSH only); never "
        "`0.0.0.0/0`: the uplink does not use the tunnel",
        check=_admin_networks,
    )
    keepalive_s: int = number(
        25, "seconds between keepalives, so the store's NAT keeps the tunnel open", integer=True
    )


@dataclass(kw_only=True)
class Config:
    """The whole file: one field per table, in the order the reference lists them."""

    bridge: BridgeConfig = table(BridgeConfig)
    paths: PathsConfig = table(PathsConfig)
    uplink: UplinkConfig = table(UplinkConfig, required="where readings are delivered")
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

    def enabled_services(self) -> list[str]:
        """Services this config turns on (their status files must be fresh)."""
        services = ["collector", "watchdog"]
        if self.mqtt or self.push:
            services.append("relay")
        if self.led.backend != "none":
            services.append("led")
        return services


def _sections(model: type) -> list[tuple[str, Section]]:
    """The tables ``model`` holds: (name, section)."""
    return [(f.name, f.metadata["section"]) for f in fields(model) if "section" in f.metadata]


def _secret_names(model: type) -> set[str]:
    names = {f.name for f in fields(model) if "key" in f.metadata and f.metadata["key"].secret}
    for _, section in _sections(model):
        for inner in _models(section):
            names |= _secret_names(inner)
    return names


def _models(section: Section) -> list[type]:
    """Every model a table of ``section`` may be read with (one per sensor type in [[sensors]])."""
    return list(section.by_type().values()) if section.by_type else [section.model]


SECRET_KEYS = tuple(sorted(_secret_names(Config)))


# ---------------------------------------------------------------- reading


@dataclass
class _Reading:
    """One pass over a file: the problems found, the tables read so far, where ``*_file`` paths start."""

    base_dir: Path
    problems: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)

    def default(self, f: Field[Any], key: Key) -> Any:
        """``f``'s default: another key's value (``inherit``), its own, or None when required."""
        table_name, _, name = key.inherit.partition(".")
        if self.tables.get(table_name) is not None:
            return getattr(self.tables[table_name], name)
        if f.default is not MISSING:
            return f.default
        if f.default_factory is not MISSING:
            return f.default_factory()
        return None


class _Table:
    """One TOML table being checked: takes keys, records problems, then flags leftovers."""

    def __init__(self, raw: Any, path: str, reading: _Reading) -> None:
        self.path = path
        self.reading = reading
        self.problems = reading.problems
        self.base_dir = reading.base_dir
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.append(f"{path}: expected a table, got {_show(raw)}")
            raw = {}
        self.raw = dict(raw)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def string(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.raw.pop(name, default)
        if value is None:
            self.problems.append(f"{self.key(name)}: required")
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{self.key(name)}: expected a string, got {_show(value)}")
            return default or ""
        if choices and value not in choices:
            self.problems.append(
                f"{self.key(name)}: expected one of {', '.join(choices)}, got {value!r}"
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.pop(name, default)
        if not isinstance(value, bool):
            self.problems.append(f"{self.key(name)}: expected true or false, got {_show(value)}")
            return default
        return value

    def number(self, name: str, default: float, minimum: float = 0, integer: bool = False) -> Any:
        """A number >= ``minimum``; durations (``*_s``) must also be above zero."""
        value = self.raw.pop(name, default)
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.problems.append(f"{self.key(name)}: expected {kind}, got {_show(value)}")
            return default
        if value < minimum or (name.endswith("_s") and value <= 0):
            bound = "> 0" if name.endswith("_s") and minimum <= 0 else f">= {minimum}"
            self.problems.append(f"{self.key(name)}: expected {kind} {bound}, got {value!r}")
            return default
        return value

    def string_list(
        self, name: str, default: list[str], choices: tuple[str, ...] = ()
    ) -> list[str]:
        value = self.raw.pop(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(
                f"{self.key(name)}: expected a list of strings, got {_show(value)}"
            )
            return list(default)
        for item in value:
            if choices and item not in choices:
                self.problems.append(
                    f"{self.key(name)}: {item!r} is not one of {', '.join(choices)}"
                )
        return list(value)

    def secret(self, name: str, required: bool) -> str:
        """``name`` inline or ``name_file`` (a path); never both."""
        inline = self.raw.pop(name, None)
        file_key = f"{name}_file"
        from_file = self.raw.pop(file_key, None)
        if inline is not None and from_file is not None:
            self.problems.append(f"{self.key(name)}: set {name} or {file_key}, not both")
            return ""
        if from_file is not None:
            if not isinstance(from_file, str):
                self.problems.append(
                    f"{self.key(file_key)}: expected a file path, got {_show(from_file)}"
                )
                return ""
            path = Path(from_file)
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                return read_bounded(path, MAX_SECRET_FILE_BYTES).decode("utf-8").strip()
            except ConfigError as exc:
                self.problems.append(f"{self.key(file_key)}: cannot read {path}: {exc.problems[0]}")
            except UnicodeDecodeError:
                self.problems.append(f"{self.key(file_key)}: {path} is not UTF-8 text")
            return ""
        if inline is None:
            if required:
                self.problems.append(f"{self.key(name)}: required (or {file_key})")
            return ""
        if not isinstance(inline, str):
            self.problems.append(
                f"{self.key(name)}: expected a string, got {type(inline).__name__}"
            )
            return ""
        return inline

    def table(self, name: str) -> Any:
        return self.raw.pop(name, None)

    def done(self) -> None:
        for leftover in sorted(self.raw):
            self.problems.append(f"{self.key(leftover)}: unknown key")


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}" if len(repr(value)) < 60 else "a list"
    return repr(value)


def _at_most(items: list[Any], limit: int, key: str, problems: list[str]) -> list[Any]:
    """``items`` when a bridge can serve that many; else nothing, and the limit named."""
    if len(items) <= limit:
        return items
    problems.append(
        f"{key}: {len(items)} configured, a bridge serves at most {limit}; "
        "split them over more bridges"
    )
    return []


def _read_table(model: type[T], raw: Any, path: str, reading: _Reading) -> T:
    """One table's keys, each read and checked as its field declares; then unknown keys."""
    t = _Table(raw, path, reading)
    made = model(**{f.name: _read_field(t, f) for f in fields(model)})
    t.done()
    problem = getattr(made, "problem", None)
    if problem and (text := problem()):
        reading.problems.append(f"{path}: {text}")
    return made


def _read_field(t: _Table, f: Field[Any]) -> Any:
    if "section" in f.metadata:
        return _read_section(t, f.name, f.metadata["section"])
    key: Key = f.metadata["key"]
    value = key.read(t, f.name, t.reading.default(f, key))
    problem = key.check(value) if key.check else None
    if problem:
        t.problems.append(f"{t.key(f.name)}: {problem}")
    return value


def _read_section(parent: _Table, name: str, section: Section) -> Any:
    raw = parent.table(name)
    path = parent.key(name)
    if section.limit:
        return _read_list(parent, raw or [], path, section)
    if raw is None and section.optional:
        return None
    if raw is None and section.required:
        parent.problems.append(f"{path}: required table ({section.required})")
        return None
    return _read_table(section.model, raw, path, parent.reading)


def _read_list(parent: _Table, raw: Any, path: str, section: Section) -> list[Any]:
    """``[[path]]`` tables, at most ``section.limit``; values of ``section.unique`` told apart."""
    if not isinstance(raw, list):
        parent.problems.append(f"{path}: expected [[{path}]] tables")
        return []
    items: dict[int, Any] = {}
    for i, item in enumerate(_at_most(raw, section.limit, path, parent.problems)):
        model = _model_of(section, item, f"{path}[{i}]", parent.problems)
        if model is not None:
            items[i] = _read_table(model, item, f"{path}[{i}]", parent.reading)
    seen: set[Any] = set()
    for i, item in items.items() if section.unique else ():
        value = getattr(item, section.unique)
        if value in seen:
            parent.problems.append(
                f"{path}[{i}].{section.unique}: {value!r} is used by another {section.each}"
            )
        seen.add(value)
    return list(items.values())


def _model_of(section: Section, raw: Any, path: str, problems: list[str]) -> type | None:
    """The model one table of ``section`` is read with: its ``type``'s, when the section has types.

    A table of an unknown type is not read further: which keys it may hold is not known."""
    if section.by_type is None:
        return section.model
    models = section.by_type()
    default = next(f.default for f in fields(section.model) if f.name == "type")
    name = raw.get("type", default) if isinstance(raw, dict) else default
    if isinstance(name, str) and name in models:
        return models[name]
    wrong = (
        f"expected one of {', '.join(models)}, got {name!r}"
        if isinstance(name, str)
        else f"expected a string, got {_show(name)}"
    )
    problems.append(f"{path}.type: {wrong}")
    return None


def parse_config(
    raw: dict[str, Any], base_dir: Path | None = None, path: str | None = None
) -> Config:
    """Check an already-parsed TOML document; raise ConfigError naming every bad key."""
    reading = _Reading(base_dir or Path.cwd())
    top = _Table(raw, "", reading)
    for name, section in _sections(
        Config
    ):  # in order: a sensor's timezone defaults to the bridge's
        reading.tables[name] = _read_section(top, name, section)
    top.done()
    if reading.problems:
        raise ConfigError(reading.problems, path)
    return Config(**reading.tables, source_path=path)


def parse_table(model: type[T], raw: Any, base_dir: Path | None = None) -> T:
    """Table ``model`` of a file read alone (what it inherits takes defaults); ConfigError if it is wrong."""
    name = next(name for name, section in _sections(Config) if section.model is model)
    reading = _Reading(base_dir or Path.cwd())
    made = _read_table(model, raw, name, reading)
    if reading.problems:
        raise ConfigError(reading.problems)
    return made


def parse_listen(listen: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ``("0.0.0.0", 8080)``; ``[::1]:8080`` works too."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def read_bounded(
    path: str | Path, limit: int = MAX_CONFIG_BYTES, follow_symlinks: bool = True
) -> bytes:
    """The file's bytes, never more than ``limit`` read; ConfigError saying why it cannot be used.

    The size is checked before reading, and the read stops one byte past ``limit`` anyway
    (a FIFO or /proc file has no size). Without ``follow_symlinks`` a symbolic link or anything
    but a regular file is refused unread: a root service must not read what a link points at.
    """
    flags = os.O_RDONLY | (0 if follow_symlinks else os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(["file not found"], path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                ["the file is a symbolic link; put the file itself there, not a link"], path
            ) from None
        raise ConfigError([f"cannot read: {exc.strerror}"], path) from None
    try:
        info = os.fstat(fd)
        if not follow_symlinks and not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                ["not a regular file (a folder, device or pipe); put a plain text file there"], path
            )
        size = info.st_size
        data = b"" if size > limit else _read_at_most(fd, limit + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], path) from None
    finally:
        os.close(fd)
    if size > limit or len(data) > limit:
        shown = f"{size} bytes" if size > limit else f"over {limit} bytes"
        raise ConfigError([f"the file is {shown}; at most {limit // 1024} KB is read"], path)
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def load_config(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and check the TOML file at ``path`` (at most MAX_CONFIG_BYTES)."""
    path = Path(path)
    try:
        text = read_bounded(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text: save it as UTF-8"], path) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from None
    return parse_config(raw, base_dir=path.resolve().parent, path=str(path))


def masked(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``***``, URLs' ones too."""

    def hide(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v else hide(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [hide(v) for v in node]
        if isinstance(node, str):
            return mask_urls(node)
        return node

    return hide(asdict(config))


# ---------------------------------------------------------------- the reference in docs/config.md


def reference() -> str:
    """The key reference of docs/config.md, as markdown, from the tables above."""
    lines = [
        "Limits, so that a slip (a copied log, generated sensors) never costs the Pi its memory",
        "or a secret:",
        "",
        f"- the file is at most {MAX_CONFIG_BYTES // 1024} KB, a `*_file` secret at most "
        f"{MAX_SECRET_FILE_BYTES // 1024} KB;",
        f"- at most {MAX_SENSORS} `[[sensors]]` and {MAX_MQTT_DEVICES} `[[mqtt.devices]]`: "
        "split more over several bridges;",
        "- a URL holds no credentials (`user:password@`): they go in the keys meant for them;",
        "- a URL names no link-local address (`169.254.x.x`, `fe80::`): 169.254.169.254 is a cloud",
        "  metadata service, and a camera there has no fixed address.",
    ]
    for name, section in _sections(Config):
        lines += ["", *_section_reference(name, section, "##")]
    return "\n".join(lines)


def _section_reference(path: str, section: Section, level: str) -> list[str]:
    title = f"`[[{path}]]`" if section.limit else f"`[{path}]`"
    if section.limit:
        title += f" (zero or more, at most {section.limit})"
    elif section.required:
        title += " (required)"
    elif section.optional:
        title += f" (optional: {section.optional})"
    lines = [f"{level} {title}", ""]
    if section.doc:
        lines += [section.doc, ""]
    lines += _key_table(section.model)
    for name, inner in _sections(section.model):
        lines += ["", *_section_reference(f"{path}.{name}", inner, level + "#")]
    shared = {f.name for f in fields(section.model)}
    for type_name, model in section.by_type().items() if section.by_type else ():
        about = (model.__doc__ or "").strip().split("\n\n")[0]
        lines += ["", f'{level}# `type = "{type_name}"`', "", about, "", *_key_table(model, shared)]
    return lines


def _key_table(model: type, shared: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The markdown table of ``model``'s keys, leaving out the ``shared`` ones listed above it."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for f in fields(model):
        if "key" in f.metadata and f.name not in shared:
            key: Key = f.metadata["key"]
            name = f"`{f.name}` / `{f.name}_file`" if key.secret else f"`{f.name}`"
            meaning = "; ".join(part for part in (key.doc, key.rule) if part)
            lines.append(f"| {name} | {_shown_default(f, key)} | {meaning} |")
    return lines


def _shown_default(f: Field[Any], key: Key) -> str:
    if key.shown:
        return key.shown
    if key.inherit:
        return f"`{key.inherit}`"
    if f.default is MISSING and f.default_factory is MISSING:
        return "required"
    value = f.default if f.default is not MISSING else f.default_factory()
    if value is None:
        return "not set"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"  # true, 60, ["milesight/#"]: as TOML writes them


# ---------------------------------------------------------------- for the services and commands


class ConfigWatch:
    """The config file, re-read when it changes; tells a broken file apart from a good one.

    ``poll()`` returns the config while the file is valid and None while it is
    missing or invalid (``problems`` then says why). ``config`` keeps the last
    valid one and ``partial(LedConfig)`` what can still be read of a broken file, so
    a service knows where to write its status and which pin its LED is on.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config: Config | None = None
        self.problems: list[str] | None = ["not read yet"]
        self._seen: tuple[int, int, int] | None | str = "never"
        self._loaded_at = 0.0

    def poll(self) -> Config | None:
        try:
            st = self.path.stat()
            seen: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            seen = None
        if seen != self._seen or time.monotonic() - self._loaded_at > RELOAD_EVERY_S:
            self._seen, self._loaded_at = seen, time.monotonic()
            try:
                self.config, self.problems = load_config(self.path), None
            except ConfigError as exc:
                if self.problems != exc.problems:
                    log.error("%s", exc.report().replace("\n", " "))
                self.problems = exc.problems
        return None if self.problems else self.config

    def partial(self, model: type[T]) -> T | None:
        """Table ``model`` (``LedConfig``) of the file, if that table is valid, whatever the rest is."""
        try:
            raw = tomllib.loads(read_bounded(self.path).decode("utf-8"))
            name = next(name for name, section in _sections(Config) if section.model is model)
            body = raw.get(name)
            if not isinstance(body, dict):
                return None
            return parse_table(model, body, self.path.parent)
        except (
            OSError,
            ValueError,
        ):  # ConfigError, TOMLDecodeError and UnicodeDecodeError are ValueErrors
            return None

    @property
    def paths(self) -> PathsConfig:
        if self.config:
            return self.config.paths
        return self.partial(PathsConfig) or PathsConfig()


def config_from_args(args: argparse.Namespace) -> Config:
    """The config named by ``-c`` (or the default path); exits with the errors if invalid."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(2) from None


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    print(json.dumps(masked(config), indent=2))
    print(f"{args.config}: OK ({len(config.sensors)} sensor(s))", file=sys.stderr)
    return 0


def _enabled(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        # Without a config nothing runs, except the LED, which shows that there is none.
        print(
            f"{exc.report()}\n{args.service}: {'runs to show no-config' if args.service == 'led' else 'off'}"
        )
        return 0 if args.service == "led" else 1
    enabled = args.service in config.enabled_services()
    print(f"{args.service}: {'on' if enabled else 'off'} in {args.config}")
    return 0 if enabled else 1


def _reference(args: argparse.Namespace) -> int:
    print(reference())
    return 0


def add_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``sensor-bridge config ACTION``; returns the actions, to which boot_config adds ``import``."""
    parser = commands.add_parser("config", help="check, install or document the config file")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])
    actions.add_parser("check", help="validate; print it with secrets masked").set_defaults(
        func=_check
    )
    enabled = actions.add_parser(
        "enabled", help="exit 0 if the config turns SERVICE on (the units' ExecCondition)"
    )
    enabled.add_argument("service", choices=sorted(UNITS))
    enabled.set_defaults(func=_enabled)
    actions.add_parser("reference", help="print docs/config.md's key reference").set_defaults(
        func=_reference
    )
    return actions
