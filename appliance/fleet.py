"""What a bridge tells the fleet about itself besides its readings: its WireGuard public key and
what its last update did (the heartbeat's optional keys, and ``status``).

appliance/remote.py and the updater (update_layout.py's Notes) write these files; they are read
here, apart from those modules, so the collector's heartbeat does not load either (about 2 MB on a
Pi Zero 2 W).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .status import read_json

ROOT = "/opt/sensor-bridge"  # the install folder: venvs, update notes
UPDATE_STATUS_FILE = "update-status.json"
NETWORK_DIR = "/etc/systemd/network"
PUB_NAME = "sensor-bridge-wg.pub"


def install_root() -> Path:
    return Path(os.environ.get("SENSOR_BRIDGE_ROOT", ROOT))


def network_dir() -> Path:
    return Path(os.environ.get("SENSOR_BRIDGE_NETWORK_DIR", NETWORK_DIR))


def last_update() -> dict[str, Any] | None:
    """What the last update did ({"last": "...", "ok": bool}), or None before the first."""
    return read_json(install_root() / UPDATE_STATUS_FILE)


def wireguard_public_key() -> str | None:
    try:
        return (network_dir() / PUB_NAME).read_text().strip() or None
    except OSError:
        return None


def fleet_facts() -> dict[str, str]:
    """The heartbeat's optional keys: the bridge's WireGuard public key, what its last update did."""
    facts = {}
    if key := wireguard_public_key():
        facts["wireguard_public_key"] = key
    if (last := last_update()) and last.get("last"):
        facts["last_update"] = str(last["last"])[:500]
    return facts


# The fleet agent's memory (appliance/adoption/state.py), under the config's state_dir, and the
# config version the cloud's last heartbeat answer named (the collector writes it, the agent reads it).
FLEET_STATE = "fleet/state.json"
FLEET_WANTED = "fleet/wanted-version"
FLEET_WANTED_SCAN = "fleet/wanted-scan"


def note_wanted_version(state_dir: str, answer: Any) -> None:
    """Pass the heartbeat answer's ``config_version`` to the fleet agent, which fetches it at once,
    and its ``scan_wanted`` (a scan the fleet page asked for), which the agent runs."""
    _note(Path(state_dir) / FLEET_WANTED, answer, "config_version")
    scan = Path(state_dir) / FLEET_WANTED_SCAN
    if isinstance(answer, dict) and answer.get("scan_wanted") is None:
        try:
            scan.unlink(missing_ok=True)  # none waiting: a restarted agent must not scan again
        except OSError:
            pass
    else:
        _note(scan, answer, "scan_wanted")


def _note(path: Path, answer: Any, key: str) -> None:
    version = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return
    try:
        if path.read_text().strip() == str(version):
            return
    except OSError:
        pass
    try:
        from .files import write_atomic

        write_atomic(path, f"{version}\n", 0o644)
    except OSError:
        pass  # the agent asks every fleet.check_s anyway


def wanted_version(state_dir: str) -> int | None:
    """The version the cloud's last heartbeat answer named, or None."""
    return _noted(Path(state_dir) / FLEET_WANTED)


def wanted_scan(state_dir: str) -> int | None:
    """The scan id the cloud's last heartbeat answer named, or None."""
    return _noted(Path(state_dir) / FLEET_WANTED_SCAN)


def _noted(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read(32).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None


def adoption_facts(state_dir: str, config_path: str | None) -> dict[str, Any]:
    """An adopted bridge's heartbeat keys: ``config_source``, and what became of its last version.

    Nothing for a bridge never adopted. ``local`` when the config file running is not the one
    the fleet agent wrote (a card's, imported at boot): the fleet page then offers no edits."""
    state = read_json(Path(state_dir) / FLEET_STATE)
    if not state or not state.get("bridge_id"):
        return {}
    if _sha256(config_path) != state.get("written_sha256"):
        return {"config_source": "local"}
    facts: dict[str, Any] = {"config_source": "cloud"}
    if isinstance(state.get("tried"), int) and state.get("status"):
        facts["config"] = {
            "version": state["tried"],
            "status": state["status"],
            "running": state.get("running"),
            **({"error": str(state["error"])[:500]} if state.get("error") else {}),
        }
    return facts


def _sha256(path: str | None) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None
