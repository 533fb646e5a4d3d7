"""The install folder an update works in, and what it notes there.

``/opt/sensor-bridge`` (:func:`appliance.fleet.install_root`) holds ``venv``,
a link to the venv the services run; ``venv.undo`` while a switch is
unconfirmed (the boot unit renames it back); ``venv.previous``, what
``update --rollback`` goes back to; ``downloads`` while a release is fetched;
and the update's notes: ``update-status.json`` (what the last update did,
read by ``status`` and the heartbeat) and ``bad-versions.json`` (never
installed again by itself). Every link changes in one rename that is on disk
before the next step. appliance/update.py is the update itself;
appliance/update_release.py fetches and checks a release.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BridgeError
from .fleet import UPDATE_STATUS_FILE, install_root
from .status import read_json, write_json_atomic

log = logging.getLogger("sensor-bridge.update")

BAD_FILE = "bad-versions.json"


class UpdateError(BridgeError, RuntimeError):
    """An update that cannot go ahead; the message says why, and nothing was changed."""


def clean_env() -> dict[str, str]:
    """This environment without what would make a venv's programs import another tree's code."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def current_schema() -> int:
    """The outbox schema the running code writes (appliance/outbox/schema.py's SCHEMA_VERSION)."""
    from . import outbox

    return int(getattr(outbox, "SCHEMA_VERSION", 1))


@dataclass(frozen=True)
class Layout:
    """The install folder: venv -> venv-<name>, venv.undo while a switch is unconfirmed, venv.previous."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(install_root())

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def undo(self) -> Path:
        return self.root / "venv.undo"

    @property
    def previous(self) -> Path:
        return self.root / "venv.previous"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def target(self, link: Path) -> str | None:
        try:
            return os.readlink(link)
        except OSError:
            return None

    def point(self, link: Path, target: str) -> None:
        """``link`` -> ``target`` in one rename, on disk before this returns."""
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        self.sync()

    def move(self, link: Path, over: Path) -> None:
        os.replace(link, over)
        self.sync()

    def sync(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def release_of(self, link: Path) -> dict[str, Any]:
        """The manifest a venv was installed from ({} for one provision.sh built from source)."""
        name = self.target(link)
        return (read_json(self.root / name / "release.json") or {}) if name else {}

    def version_of(self, link: Path) -> str | None:
        """The version a venv link points at; one provision.sh built is named after its folder."""
        name = self.target(link)
        if not name:
            return None
        return self.release_of(link).get("version") or name

    def running(self) -> str | None:
        """The version the services run (None before any install); this code's when provision.sh built it."""
        if not self.target(self.venv):
            return None
        return self.release_of(self.venv).get("version") or __version__


class Notes:
    """update-status.json (what the last update did) and bad-versions.json (never again by itself)."""

    def __init__(self, layout: Layout) -> None:
        self.status_path = layout.root / UPDATE_STATUS_FILE
        self.bad_path = layout.root / BAD_FILE

    def bad(self) -> dict[str, Any]:
        return read_json(self.bad_path) or {}

    def mark_bad(self, version: str, why: str) -> None:
        bad = self.bad()
        bad[version] = {"why": why, "at": time.time()}
        write_json_atomic(self.bad_path, bad)

    def interrupted(self, version: str) -> int:
        body = read_json(self.status_path) or {}
        return int(body.get("interrupted", {}).get(version, 0))

    def report(self, message: str, ok: bool, **extra: Any) -> None:
        (log.info if ok else log.error)("%s", message)
        body = {
            "last": message,
            "ok": ok,
            "at": time.time(),
            "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        body.update(extra)
        write_json_atomic(self.status_path, body)
