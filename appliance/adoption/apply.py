"""Turning a cloud config document into the bridge's config file, and back if it fails.

The document holds the store's part (sensors, mqtt, push, alerts, update...);
the bridge adds its own: ``[bridge] id`` from the claim, ``[uplink]`` (the fleet
url's ingest route, the credential file as the key), and keeps its local tables
(``[fleet]``, ``[paths]``, ``[watchdog]``, ``[led]``, ``[remote]``, and
``[health]`` unless the document sets it). The result is checked with the
rules of ``sensor-bridge config check`` before anything is written; it is
written atomically with the file it replaces kept as ``config.last-good.toml``.
The services are restarted with fixed ``systemctl restart`` commands of the
bridge's own units (found on PATH, never text from a config), and the health
gate reads the collector's status file.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, parse_config
from ..files import write_atomic
from ..status import read_status, update_gate_accepts

log = logging.getLogger("sensor-bridge.fleet")

LAST_GOOD = "config.last-good.toml"
CONFIG_MODE = 0o640  # as `config import` installs it: root:sensor-bridge
LOCAL_TABLES = ("bridge", "paths", "health", "watchdog", "led", "remote", "fleet")
# The bridge's own concerns: a document that holds one of them is refused, not merged.
NOT_FROM_THE_CLOUD = ("uplink", "fleet", "remote", "watchdog", "paths")
INGEST_PATH = "/api/bridge/v1/ingest"
SYSTEMCTL = "systemctl"
# The units that read the config only when they start (the watchdog and LED re-read it).
RESTARTED = ("sensor-bridge.service", "sensor-bridge-relay.service")


def compose(
    document: Any, local: dict[str, Any], bridge_id: str, fleet_url: str, credential: Path
) -> dict[str, Any]:
    """The whole config: the document, the bridge's local tables, its id and its uplink.

    Raises ConfigError when the document is not a table or holds a table that is the bridge's own.
    """
    if not isinstance(document, dict):
        raise ConfigError(["config: expected a table (an object) of tables"])
    own = sorted(set(document) & set(NOT_FROM_THE_CLOUD))
    if own:
        raise ConfigError(
            [f"{name}: made by the bridge itself, never sent by the cloud" for name in own]
        )
    composed: dict[str, Any] = {k: v for k, v in local.items() if k in LOCAL_TABLES}
    composed.update({k: v for k, v in document.items() if k != "bridge"})
    bridge = dict(local.get("bridge") or {})
    bridge.update(document.get("bridge") or {})
    bridge["id"] = bridge_id
    composed["bridge"] = bridge
    composed["uplink"] = {
        "url": fleet_url.rstrip("/") + INGEST_PATH,
        "api_key_file": str(credential),
    }
    return composed


def checked_text(composed: dict[str, Any], target: Path) -> tuple[str, Config]:
    """The TOML text of ``composed`` and its Config; ConfigError with every problem, as `config check`."""
    text = to_toml(composed)
    config = parse_config(tomllib.loads(text), base_dir=target.parent, path=str(target))
    return text, config


def local_tables(target: Path) -> dict[str, Any]:
    """The bridge's own tables as its config file holds them now (nothing when unreadable)."""
    try:
        raw = tomllib.loads(target.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in raw.items() if k in LOCAL_TABLES}


def made_with(target: Path, credential: Path) -> bool:
    """Whether the config file at ``target`` is one the agent composed around ``credential``."""
    try:
        raw = tomllib.loads(target.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    uplink = raw.get("uplink")
    return isinstance(uplink, dict) and uplink.get("api_key_file") == str(credential)


def fleet_only(target: Path) -> str:
    """The config as it was before the cloud's: the bridge's local tables, without its claimed id."""
    local = local_tables(target)
    bridge = {k: v for k, v in (local.get("bridge") or {}).items() if k != "id"}
    return to_toml(
        {**local, "bridge": bridge} if bridge else {k: v for k, v in local.items() if k != "bridge"}
    )


def install(target: Path, text: str) -> None:
    """Write ``text`` as the config, the file it replaces kept as the last good one."""
    if target.exists():
        shutil.copy2(target, target.with_name(LAST_GOOD))
    write_atomic(target, text, CONFIG_MODE, _owner())


def restore_last_good(target: Path) -> bool:
    """Put the last good config back; False when there is none."""
    last = target.with_name(LAST_GOOD)
    try:
        text = last.read_text()
    except OSError:
        return False
    write_atomic(target, text, CONFIG_MODE, _owner())
    return True


def _owner() -> tuple[int, int] | None:
    import os
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        return 0, pwd.getpwnam("sensor-bridge").pw_gid
    except KeyError:
        return None


def restart_services() -> str | None:
    """``systemctl restart`` the units that read the config at start; None, or why it failed."""
    systemctl = shutil.which(SYSTEMCTL)
    if systemctl is None:
        return "systemctl not found on PATH"
    try:
        done = subprocess.run(
            [systemctl, "restart", *RESTARTED], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl restart failed: {exc}"
    if done.returncode != 0:
        return f"systemctl restart failed: {(done.stderr or done.stdout).strip()[:300]}"
    return None


# ---------------------------------------------------------------- the health gate


def collector_pid(config: Config) -> int | None:
    status = read_status(config.paths.run_dir, "collector")
    pid = (status or {}).get("pid")
    return pid if isinstance(pid, int) else None


def gate_verdict(config: Config, old_pid: int | None, since: float) -> tuple[bool, str | None]:
    """(passed, first error so far): every sensor of ``config`` polled by the restarted collector.

    Passed means a collector other than the one before the restart (``old_pid``),
    in a status file written after ``since`` (epoch seconds), reports every sensor
    ``ok`` (and itself in a state the update's gate accepts).
    """
    status = read_status(config.paths.run_dir, "collector")
    written = (status or {}).get("written_at")
    fresh = isinstance(written, int | float) and written >= since
    if not status or status.get("pid") == old_pid or not fresh:
        return False, "the collector has not started with the new config"
    sensors = {s.get("id"): s for s in status.get("sensors") or [] if isinstance(s, dict)}
    first_error = None
    for sensor in config.sensors:
        seen = sensors.get(sensor.id) or {}
        if seen.get("state") == "failing" and first_error is None:
            first_error = f"sensor {sensor.id}: {seen.get('last_error') or 'failing'}"
        elif seen.get("state") != "ok" and first_error is None:
            first_error = f"sensor {sensor.id}: no poll completed"
    if first_error:
        return False, first_error
    if not update_gate_accepts(str(status.get("state"))):
        return False, f"collector: {status.get('reason') or status.get('state')}"
    return True, None


# ---------------------------------------------------------------- TOML out


def to_toml(doc: dict[str, Any]) -> str:
    """A TOML text of ``doc`` (tables, lists of tables, strings, numbers, booleans, lists)."""
    lines: list[str] = []
    _table(doc, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(node: dict[str, Any], path: list[str], lines: list[str]) -> None:
    for key, value in node.items():
        if not _is_table(value) and not _is_tables(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in node.items():
        if _is_table(value):
            lines += ["", f"[{'.'.join(_key(k) for k in [*path, key])}]"]
            _table(value, [*path, key], lines)
        elif _is_tables(value):
            for item in value:
                lines += ["", f"[[{'.'.join(_key(k) for k in [*path, key])}]]"]
                _table(item, [*path, key], lines)


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    bare = key and all(c.isalnum() and c.isascii() or c in "-_" for c in key)
    return key if bare else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's too; DEL must be escaped in TOML (JSON leaves it raw).
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        raise ConfigError(["a value is null: leave the key out instead"])
    raise ConfigError([f"a value of type {type(value).__name__} has no TOML form"])
