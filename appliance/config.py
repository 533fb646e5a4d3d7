"""The one config file (TOML, keys in docs/config.md), loaded and checked.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError`
listing every problem at once, each naming its key path (``sensors[2].url``)
and what was expected: a person fixing the file over SSH, or reading
``sensor-bridge-error.txt`` on the boot partition, sees all of it in one go.
Unknown keys are errors, because a typo must never silently turn a sensor off.
Secrets may come inline or from a ``*_file``; :func:`masked` shows a config
with every secret hidden.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_PATH = "/etc/sensor-bridge/config.toml"
SENSOR_TYPES = ("milesight-camera",)
POLLED_KINDS = ("line_counts", "region_counts", "live_counts")
SECRET_KEYS = ("api_key", "password", "ping_url")


class ConfigError(ValueError):
    """The config is unusable; ``problems`` holds one line per wrong key."""

    def __init__(self, problems: list[str], path: str | Path | None = None) -> None:
        self.problems = problems
        self.path = str(path) if path else None
        where = f"{self.path}: " if self.path else ""
        super().__init__(where + "; ".join(problems))

    def report(self) -> str:
        head = f"Config {self.path} is invalid:" if self.path else "Config is invalid:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


@dataclass
class BridgeConfig:
    id: str
    timezone: str
    require_time_sync: bool = True


@dataclass
class PathsConfig:
    state_dir: str = "/var/lib/sensor-bridge"
    run_dir: str = "/run/sensor-bridge"


@dataclass
class UplinkConfig:
    url: str
    api_key: str = field(repr=False)
    heartbeat_url: str = ""
    heartbeat_s: float = 60
    batch_size: int = 500
    timeout_s: float = 15
    gzip: bool = True
    verify_tls: bool = True


@dataclass
class OutboxConfig:
    max_mb: float = 256
    min_free_disk_mb: float = 200


@dataclass
class HealthConfig:
    listen: str = "0.0.0.0:8080"


@dataclass
class SensorConfig:
    id: str
    url: str
    type: str = "milesight-camera"
    username: str = "admin"
    password: str = field(default="", repr=False)
    auth: str = "auto"
    timezone: str = "UTC"
    interval_s: float = 300
    collect: list[str] = field(default_factory=lambda: ["line_counts", "region_counts"])
    live_interval_s: float = 60
    backfill_h: float = 168
    timeout_s: float = 10


@dataclass
class MqttDevice:
    sensor_id: str
    serial: str = ""
    topic: str = ""


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = "sensor-bridge"
    password: str = field(default="", repr=False)
    topics: list[str] = field(default_factory=lambda: ["milesight/#"])
    client_id: str = "sensor-bridge-relay"
    devices: list[MqttDevice] = field(default_factory=list)


@dataclass
class PushConfig:
    listen: str = "0.0.0.0:8090"
    username: str = "milesight"
    password: str = field(default="", repr=False)
    max_body_kb: int = 512


@dataclass
class WatchdogConfig:
    stall_s: float = 900
    check_s: float = 10
    max_rss_mb: float = 200
    network_down_s: float = 1800
    reboot: bool = True
    max_reboots: int = 3
    reboot_window_s: float = 21600
    restart_cmd: str = "systemctl restart {unit}"
    reboot_cmd: str = "systemctl reboot"


@dataclass
class LedConfig:
    backend: str = "gpiozero"
    pin: int = 17
    rgb: list[int] | None = None
    active_high: bool = True


@dataclass
class AlertsConfig:
    """[alerts]: the bridge's own dead-man's-switch ping (appliance/alerts.py)."""

    ping_url: str = field(default="", repr=False)
    ping_s: float = 60


def _parse_alerts(raw: Any, problems: list[str], base_dir: Path) -> AlertsConfig:
    t = _Table(raw, "alerts", problems, base_dir)
    alerts = AlertsConfig(ping_url=t.secret("ping_url", required=False), ping_s=t.number("ping_s", 60))
    parts = urlsplit(alerts.ping_url)
    if alerts.ping_url and (parts.scheme not in ("https", "http") or not parts.hostname):
        # the URL itself is a secret: say what is wrong without repeating it
        problems.append("alerts.ping_url: expected a URL like https://hc-ping.com/<uuid>")
    t.done()
    return alerts


@dataclass
class Config:
    bridge: BridgeConfig
    paths: PathsConfig
    uplink: UplinkConfig
    outbox: OutboxConfig
    health: HealthConfig
    sensors: list[SensorConfig]
    mqtt: MqttConfig | None
    push: PushConfig | None
    watchdog: WatchdogConfig
    led: LedConfig
    source_path: str | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

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


# ---------------------------------------------------------------- checking


class _Table:
    """One TOML table being checked: takes keys, records problems, then flags leftovers."""

    def __init__(self, raw: Any, path: str, problems: list[str], base_dir: Path) -> None:
        self.path = path
        self.problems = problems
        self.base_dir = base_dir
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.append(f"{path}: expected a table, got {_show(raw)}")
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

    def string_list(self, name: str, default: list[str], choices: tuple[str, ...] = ()) -> list[str]:
        value = self.raw.pop(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{self.key(name)}: expected a list of strings, got {_show(value)}")
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
                self.problems.append(f"{self.key(file_key)}: expected a file path, got {_show(from_file)}")
                return ""
            path = Path(from_file)
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                return path.read_text().strip()
            except OSError as exc:
                self.problems.append(f"{self.key(file_key)}: cannot read {path}: {exc.strerror}")
                return ""
        if inline is None:
            if required:
                self.problems.append(f"{self.key(name)}: required (or {file_key})")
            return ""
        if not isinstance(inline, str):
            self.problems.append(f"{self.key(name)}: expected a string, got {type(inline).__name__}")
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


def _check_zone(table: _Table, name: str, zone: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        table.problems.append(f"{table.key(name)}: unknown IANA timezone {zone!r}")


def _check_url(table: _Table, name: str, url: str, schemes: tuple[str, ...]) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        table.problems.append(
            f"{table.key(name)}: expected a URL like {schemes[0]}://host[:port], got {url!r}"
        )
        return
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        table.problems.append(f"{table.key(name)}: bad port in {url!r}")


def _check_listen(table: _Table, name: str, listen: str) -> None:
    if not listen:
        return
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        table.problems.append(
            f"{table.key(name)}: expected host:port such as 0.0.0.0:8080, got {listen!r}"
        )


def parse_listen(listen: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ``("0.0.0.0", 8080)``; ``[::1]:8080`` works too."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


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


def parse_config(raw: dict[str, Any], base_dir: Path | None = None, path: str | None = None) -> Config:
    """Check an already-parsed TOML document; raise ConfigError naming every bad key."""
    problems: list[str] = []
    base_dir = base_dir or Path.cwd()
    top = _Table(raw, "", problems, base_dir)

    t = _Table(top.table("bridge"), "bridge", problems, base_dir)
    bridge = BridgeConfig(
        id=t.string("id", socket.gethostname()),
        timezone=t.string("timezone", system_timezone()),
        require_time_sync=t.boolean("require_time_sync", True),
    )
    _check_zone(t, "timezone", bridge.timezone)
    if not bridge.id.strip():
        problems.append("bridge.id: must not be empty")
    t.done()

    t = _Table(top.table("paths"), "paths", problems, base_dir)
    paths = PathsConfig(
        state_dir=t.string("state_dir", PathsConfig.state_dir),
        run_dir=t.string("run_dir", PathsConfig.run_dir),
    )
    t.done()

    raw_uplink = top.table("uplink")
    if raw_uplink is None:
        problems.append("uplink: required table (where readings are delivered)")
    t = _Table(raw_uplink, "uplink", problems, base_dir)
    uplink = UplinkConfig(
        url=t.string("url", None if raw_uplink is not None else ""),
        api_key=t.secret("api_key", required=raw_uplink is not None),
        heartbeat_url=t.string("heartbeat_url", ""),
        heartbeat_s=t.number("heartbeat_s", 60),
        batch_size=t.number("batch_size", 500, minimum=1, integer=True),
        timeout_s=t.number("timeout_s", 15),
        gzip=t.boolean("gzip", True),
        verify_tls=t.boolean("verify_tls", True),
    )
    _check_url(t, "url", uplink.url, ("https", "http"))
    _check_url(t, "heartbeat_url", uplink.heartbeat_url, ("https", "http"))
    t.done()

    t = _Table(top.table("outbox"), "outbox", problems, base_dir)
    outbox = OutboxConfig(
        max_mb=t.number("max_mb", 256, minimum=1),
        min_free_disk_mb=t.number("min_free_disk_mb", 200),
    )
    t.done()

    t = _Table(top.table("health"), "health", problems, base_dir)
    health = HealthConfig(listen=t.string("listen", HealthConfig.listen))
    _check_listen(t, "listen", health.listen)
    t.done()

    sensors: list[SensorConfig] = []
    raw_sensors = top.table("sensors") or []
    if not isinstance(raw_sensors, list):
        problems.append("sensors: expected [[sensors]] tables")
        raw_sensors = []
    seen: set[str] = set()
    for i, raw_sensor in enumerate(raw_sensors):
        t = _Table(raw_sensor, f"sensors[{i}]", problems, base_dir)
        sensor = SensorConfig(
            id=t.string("id"),
            type=t.string("type", "milesight-camera", SENSOR_TYPES),
            url=t.string("url"),
            username=t.string("username", "admin"),
            password=t.secret("password", required=False),
            auth=t.string("auth", "auto", ("auto", "basic", "digest")),
            timezone=t.string("timezone", bridge.timezone),
            interval_s=t.number("interval_s", 300),
            collect=t.string_list("collect", ["line_counts", "region_counts"], POLLED_KINDS),
            live_interval_s=t.number("live_interval_s", 60),
            backfill_h=t.number("backfill_h", 168),
            timeout_s=t.number("timeout_s", 10),
        )
        _check_zone(t, "timezone", sensor.timezone)
        _check_url(t, "url", sensor.url, ("http", "https"))
        if sensor.id in seen:
            problems.append(f"sensors[{i}].id: {sensor.id!r} is used by another sensor")
        seen.add(sensor.id)
        if not sensor.collect:
            problems.append(f"sensors[{i}].collect: empty; list at least one of {', '.join(POLLED_KINDS)}")
        t.done()
        sensors.append(sensor)

    mqtt = None
    raw_mqtt = top.table("mqtt")
    if raw_mqtt is not None:
        t = _Table(raw_mqtt, "mqtt", problems, base_dir)
        devices = []
        raw_devices = t.table("devices") or []
        if not isinstance(raw_devices, list):
            problems.append("mqtt.devices: expected [[mqtt.devices]] tables")
            raw_devices = []
        for j, raw_device in enumerate(raw_devices):
            d = _Table(raw_device, f"mqtt.devices[{j}]", problems, base_dir)
            device = MqttDevice(
                sensor_id=d.string("sensor_id"),
                serial=d.string("serial", ""),
                topic=d.string("topic", ""),
            )
            if not device.serial and not device.topic:
                problems.append(f"mqtt.devices[{j}]: set serial or topic to say which device this is")
            d.done()
            devices.append(device)
        mqtt = MqttConfig(
            host=t.string("host", "127.0.0.1"),
            port=t.number("port", 1883, minimum=1, integer=True),
            username=t.string("username", "sensor-bridge"),
            password=t.secret("password", required=False),
            topics=t.string_list("topics", ["milesight/#"]),
            client_id=t.string("client_id", "sensor-bridge-relay"),
            devices=devices,
        )
        t.done()

    push = None
    raw_push = top.table("push")
    if raw_push is not None:
        t = _Table(raw_push, "push", problems, base_dir)
        push = PushConfig(
            listen=t.string("listen", PushConfig.listen),
            username=t.string("username", "milesight"),
            password=t.secret("password", required=True),
            max_body_kb=t.number("max_body_kb", 512, minimum=1, integer=True),
        )
        _check_listen(t, "listen", push.listen)
        t.done()

    t = _Table(top.table("watchdog"), "watchdog", problems, base_dir)
    watchdog = WatchdogConfig(
        stall_s=t.number("stall_s", 900),
        check_s=t.number("check_s", 10),
        max_rss_mb=t.number("max_rss_mb", 200, minimum=1),
        network_down_s=t.number("network_down_s", 1800),
        reboot=t.boolean("reboot", True),
        max_reboots=t.number("max_reboots", 3, integer=True),
        reboot_window_s=t.number("reboot_window_s", 21600),
        restart_cmd=t.string("restart_cmd", WatchdogConfig.restart_cmd),
        reboot_cmd=t.string("reboot_cmd", WatchdogConfig.reboot_cmd),
    )
    t.done()

    t = _Table(top.table("led"), "led", problems, base_dir)
    rgb = t.table("rgb")
    if rgb is not None and (
        not isinstance(rgb, list) or len(rgb) != 3 or not all(isinstance(p, int) and 0 <= p <= 27 for p in rgb)
    ):
        problems.append(f"led.rgb: expected three BCM pin numbers like [17, 27, 22], got {_show(rgb)}")
        rgb = None
    led = LedConfig(
        backend=t.string("backend", "gpiozero", ("gpiozero", "none")),
        pin=t.number("pin", 17, integer=True),
        rgb=rgb,
        active_high=t.boolean("active_high", True),
    )
    if not 0 <= led.pin <= 27:
        problems.append(f"led.pin: expected a BCM pin number 0..27, got {led.pin}")
    t.done()

    alerts = _parse_alerts(top.table("alerts"), problems, base_dir)
    top.done()
    if problems:
        raise ConfigError(problems, path)
    return Config(bridge, paths, uplink, outbox, health, sensors, mqtt, push, watchdog, led, path, alerts=alerts)


def load_config(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and check the TOML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(["file not found"], path) from None
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], path) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from None
    return parse_config(raw, base_dir=path.resolve().parent, path=str(path))


def masked(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``***``."""

    def hide(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ("***" if k in SECRET_KEYS and v else hide(v)) for k, v in node.items()
            }
        if isinstance(node, list):
            return [hide(v) for v in node]
        return node

    return hide(asdict(config))
