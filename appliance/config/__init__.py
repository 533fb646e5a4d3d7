"""The one config file (TOML, keys in docs/config.md): its shape, its reader, its commands.

Rooms (docs/architecture.md, "Config"):

- ``appliance/config_keys.py``: how a key is declared and checked (``text``,
  ``number``, ``secret``...), and ConfigError; imports nothing of the appliance.
- each part's table, beside the part: ``led_table.py``, ``remote_table.py``,
  ``update_table.py``, ``watchdog_table.py``, ``alerts_table.py``, ``fleet_table.py``,
  ``relay_tables.py`` (``[mqtt]``, ``[[mqtt.devices]]``, ``[push]``); a sensor
  family's ``[[sensors]]`` table beside its source (``sources/milesight_table.py``),
  named by its row in ``sources.SOURCES``.
- ``model.py``: :class:`Config`, one line per table (a new table registers
  there), and the bridge's own tables (bridge, paths, uplink, outbox, health).
- ``reader.py``: parse, check, load within bounds, mask secrets.
- ``reference.py``: the key reference of docs/config.md; ``watch.py``: a
  service's ConfigWatch; ``commands.py``: ``sensor-bridge config ...``.

The names below are the ones callers import from ``appliance.config``. Nothing
in this package imports a service, a poller or the outbox, so any process can
read its table for the cost of the tables alone.
"""

from __future__ import annotations

from ..alerts_table import AlertsConfig
from ..config_keys import REQUIRED, ConfigError, Key, mask_url, mask_urls
from ..fleet_table import FleetConfig
from ..led_table import LedConfig
from ..relay_tables import MAX_MQTT_DEVICES, MqttConfig, MqttDevice, PushConfig
from ..remote_table import RemoteConfig
from ..update_table import UpdateConfig
from ..watchdog_table import WatchdogConfig
from .commands import add_commands, config_from_args
from .model import (
    MAX_SENSORS,
    BridgeConfig,
    Config,
    HealthConfig,
    OutboxConfig,
    PathsConfig,
    UplinkConfig,
    system_timezone,
)
from .reader import (
    DEFAULT_PATH,
    MAX_CONFIG_BYTES,
    MAX_SECRET_FILE_BYTES,
    SECRET_KEYS,
    load_config,
    masked,
    parse_config,
    parse_listen,
    parse_table,
    read_bounded,
)
from .reference import reference
from .watch import RELOAD_EVERY_S, ConfigWatch

__all__ = [
    "DEFAULT_PATH",
    "MAX_CONFIG_BYTES",
    "MAX_MQTT_DEVICES",
    "MAX_SECRET_FILE_BYTES",
    "MAX_SENSORS",
    "RELOAD_EVERY_S",
    "REQUIRED",
    "SECRET_KEYS",
    "AlertsConfig",
    "BridgeConfig",
    "Config",
    "ConfigError",
    "ConfigWatch",
    "HealthConfig",
    "Key",
    "FleetConfig",
    "LedConfig",
    "MqttConfig",
    "MqttDevice",
    "OutboxConfig",
    "PathsConfig",
    "PushConfig",
    "RemoteConfig",
    "UpdateConfig",
    "UplinkConfig",
    "WatchdogConfig",
    "add_commands",
    "config_from_args",
    "load_config",
    "mask_url",
    "mask_urls",
    "masked",
    "parse_config",
    "parse_listen",
    "parse_table",
    "read_bounded",
    "reference",
    "system_timezone",
]
