"""The uplink's side: the oldest pending records out, the cloud's answers back in.

``take`` reads the oldest pending records (they stay pending); ``delivered``
marks what the cloud confirmed, held for the next write transaction
(writes.HeldMarks) so the pages it changes are written once; ``reject`` keeps
what the cloud refused for good as dead letters. A stored record that cannot be
read (a damaged byte on the card) is moved to the dead letters with its raw
bytes and why, so it never stops delivery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from .dead_letters import bury, preview
from .rows import DeadEntry, Pending
from .store import Store

log = logging.getLogger("sensor-bridge.outbox")

TAKE_ROUNDS = 20  # bounded: each round moves at least one unreadable record out of the way
OLDEST = (
    "SELECT id, revision, CAST(body AS BLOB), rowid FROM readings WHERE state = 'pending'"
    " ORDER BY seq LIMIT ?"
)
Unreadable = tuple[str, int, bytes, str, int]  # id, revision, body bytes, why, rowid


def decode(rid: str, raw: bytes) -> dict[str, Any]:
    """A stored record's body, or ValueError saying why it cannot be read."""
    body = json.loads(raw.decode())
    if not isinstance(body, dict) or body.get("id") != rid:
        raise ValueError("the stored body is not this record")
    return body


class Delivery:
    """What the uplink takes from the outbox and tells it back."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read_pending(
        self, sql: str, args: tuple[Any, ...]
    ) -> tuple[list[Pending], list[Unreadable]]:
        """Rows (id, revision, body bytes, rowid) -> readable records, and the unreadable ones."""
        with self.store.lock:
            rows = self.store.db.execute(sql, args).fetchall()
        good, bad = [], []
        for rid, revision, raw, row in rows:
            try:
                good.append(Pending(rid, revision, decode(rid, bytes(raw)), row))
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                why = f"stored record cannot be read ({exc})"
                bad.append((rid, revision, bytes(raw), why, row))
        return good, bad

    def take(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest pending records, oldest first (they stay pending)."""
        store, held = self.store, self.store.held
        if held.due() and not store.readonly:
            store.write_held()
        good: list[Pending] = []
        for _ in range(TAKE_ROUNDS):
            good, bad = self._read_pending(OLDEST, (limit + len(held.rows),))
            if not bad or store.readonly:
                break
            self._bury(bad)
        return [p for p in good if not held.hides(p)][:limit]

    def _bury(self, bad: list[Unreadable]) -> None:
        now = time.time()
        with self.store.transaction() as db:
            for rid, revision, raw, reason, row in bad:
                bury(db, row, rid, revision, DeadEntry("outbox", reason, preview(raw), rid), now)
                log.error("outbox: reading %s %s; moved to the dead-letter table", rid[:12], reason)

    def newest_pending(self, avoid_sensors: set[str], avoid_ids: set[str]) -> Pending | None:
        """A recent pending record for the uplink's probe: preferably of a sensor not in
        ``avoid_sensors``, then preferably not in ``avoid_ids``."""
        held = self.store.held
        good, _ = self._read_pending(
            "SELECT id, revision, CAST(body AS BLOB), rowid FROM readings WHERE state = 'pending'"
            " ORDER BY seq DESC LIMIT ?",
            (200 + len(held.rows),),
        )
        good = [p for p in good if not held.hides(p)]
        good.sort(key=lambda p: (p.body.get("sensor_id") in avoid_sensors, p.id in avoid_ids))
        return good[0] if good else None

    def delivered(self, sent: Iterable[Pending], now: float | None = None) -> int:
        """The cloud has these; a record that got a newer revision meanwhile stays pending."""
        now = time.time() if now is None else now
        store = self.store
        with store.lock:
            done = [
                item
                for item in sent
                if not store.held.hides(item)
                and store.db.execute(
                    "SELECT 1 FROM readings WHERE rowid = ? AND id = ? AND revision = ?"
                    " AND state = 'pending'",
                    (item.row, item.id, item.revision),
                ).fetchone()
            ]
            store.held.add(done, now)
            if store.held.due():
                store.write_held()
        return len(done)

    def reject(self, rejected: Iterable[tuple[Pending, str]]) -> int:
        """The cloud refused these records for good: keep them in the dead-letter table."""
        rejected = list(rejected)
        if not rejected:  # no transaction: it would write the held deliveries before their time
            return 0
        now = time.time()
        moved = 0
        with self.store.transaction() as db:
            for item, reason in rejected:
                entry = DeadEntry("uplink", reason, json.dumps(item.body), item.id)
                moved += bury(db, item.row, item.id, item.revision, entry, now)
        return moved

    def pending_list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The oldest pending records, for ``sensor-bridge outbox list``; an unreadable one
        is ``{"id": ..., "unreadable": why}`` (the services move it to the dead letters)."""
        good, bad = self._read_pending(OLDEST, (limit,))
        listed = {p.id: p.body for p in good} | {
            rid: {"id": rid, "unreadable": why} for rid, _, _, why, _ in bad
        }
        with self.store.lock:
            order = [
                r[0]
                for r in self.store.db.execute(
                    "SELECT id FROM readings WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
                )
            ]
        return [listed[i] for i in order if i in listed]

    def events_since(self, name: str, since: float, limit: int = 5000) -> list[dict[str, Any]]:
        """The newest ``event`` readings named ``name`` queued since ``since`` (a LoRaWAN frame
        partly decoded: kept as readings, so not a dead letter, yet ``status`` names its device)."""
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT sensor_id, body, queued_at FROM readings WHERE kind = 'event'"
                " AND queued_at >= ? AND instr(body, ?) > 0 ORDER BY queued_at DESC LIMIT ?",
                (since, name, limit),
            ).fetchall()
        found = []
        for sensor_id, body, queued_at in rows:
            values = json.loads(body).get("values") or {}
            if values.get("event") == name:
                found.append({"sensor_id": sensor_id, "values": values, "queued_at": queued_at})
        return found
