"""What the fleet agent remembers across restarts: ``<state_dir>/fleet/state.json``.

Whether the bridge is claimed (and as whom), where its config comes from
(``cloud`` or ``local``, a card's file), the last cloud version it tried and the
one it runs, what became of it (applied, pending, rolled_back, invalid, and the
first error), the versions it refused (never tried again), and the hash of the
config text it wrote itself: a config file with other text was put there by a
person (the card), and the card wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..fleet import FLEET_STATE
from ..status import read_json, write_json_atomic

MAX_ERROR_CHARS = 500


@dataclass
class FleetState:
    bridge_id: str | None = None
    label: str | None = None
    timezone: str | None = None
    source: str | None = None  # cloud | local
    tried: int | None = None  # the last version tried
    running: int | None = None  # the version running now
    status: str | None = None  # applied | pending | rolled_back | invalid
    error: str | None = None
    refused: list[int] = field(default_factory=list)
    written_sha256: str | None = None  # the config text this agent wrote
    gate_until: float | None = None  # while pending: when the health gate gives up
    gate_after_pid: int | None = None  # the collector's pid before the restart

    @classmethod
    def load(cls, state_dir: str | Path) -> FleetState:
        body = read_json(Path(state_dir) / FLEET_STATE) or {}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in known})

    def save(self, state_dir: str | Path) -> None:
        write_json_atomic(Path(state_dir) / FLEET_STATE, asdict(self), 0o644)

    def report(self, version: int, status: str, error: str | None = None) -> None:
        """Note what became of ``version`` (the heartbeat carries it to the fleet page)."""
        self.tried, self.status = version, status
        self.error = _printable(error)[:MAX_ERROR_CHARS] if error else None
        if status in ("rolled_back", "invalid") and version not in self.refused:
            self.refused.append(version)
        if status == "applied":
            self.running = version

    def shown(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
