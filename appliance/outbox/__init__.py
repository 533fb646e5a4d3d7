"""The outbox: every reading waits here, on disk, until the cloud API has it.

One SQLite file (WAL) shared by the collector and the relay. Sources ``put``
records (and move their cursors in the same transaction, so a crash between
the two re-reads rather than loses); the uplink ``take``s the oldest pending
ones and marks them ``delivered`` only after a 2xx. :class:`Outbox` (box.py)
is the whole public face; each room behind it is a file of its own:

* schema.py      the tables, and migrating an older release's file in place
* damage.py      a corrupt file moved aside, a torn log reported, a full disk
* store.py       the open file and its write transaction, shared by every room
* writes.py      what one put stores inside a transaction
* batcher.py     puts that arrive together committed in one transaction
* revisions.py   a record stored again: unchanged, next revision, or final
* delivery.py    the uplink's side: take, delivered, reject
* dead_letters.py what cannot be delivered, kept for a person
* first_seen.py  when the relay first received a message with no time of its own
* retention.py   what is forgotten, and in which order, within the limits
* stats.py       what status, the heartbeat and /health report

Durability: ``synchronous=FULL``. In WAL mode that costs one fsync per
transaction, which the callers amortise by batching. NORMAL would survive
SIGKILL but could lose the last commits on a power cut; a Pi in a back office
loses power, and by then the relay has already acknowledged those MQTT
messages and the poller has moved its cursor past those rows, so they would be
gone for good. What a power cut can lose, per write path:

* ``put`` from the collector's polls: a sensor's polls that fall due together
  are stored in one transaction when the last of them ends
  (:meth:`Outbox.together`), and the batches of several sensors gathered by
  ``group_with()`` share it (batcher.py). A cut loses at most the readings of
  batches not yet committed, each with its cursor, so the next poll reads them
  again (a live count of that moment is lost, as one taken just before any
  cut); never a reading whose cursor moved.
* ``put`` from the relay (appliance/committer.py): a batch of messages is one
  transaction and is acknowledged after it. A cut loses only unacknowledged
  messages, which the broker or the device sends again.
* ``delivered``: the cloud's confirmations are held in memory and written with
  the collector's next write transaction (the next poll round's), or in one of
  their own once held a poll interval (``hold_deliveries``; 90 s at most, and
  at once where nothing polls). A cut or a kill can lose the marking, never a
  reading: those readings are sent again with the same ids and revisions,
  which the cloud counts once (docs/ingest-contract.md). Until written, other
  processes (``status``, ``outbox list``) still count them as pending.
* the schema migration of an older release's file: one transaction on first
  open; a cut leaves the file as it was, migrated at the next start.
* shedding, dead letters, counters: one transaction each; a cut loses the
  change as a whole (a shed is done again, a counter misses that step).

Read-only tools open the file with ``readonly=True`` and never change it.
"""

from __future__ import annotations

from .box import Outbox
from .damage import OutboxDamage, OutboxFull, cannot_write, torn_wal
from .first_seen import FirstSeenMemory, FirstSighting
from .revisions import digest as _digest
from .rows import DeadEntry, OutboxStats, Pending, PutResult, Write
from .schema import SCHEMA, SCHEMA_VERSION

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "DeadEntry",
    "FirstSeenMemory",
    "FirstSighting",
    "Outbox",
    "OutboxDamage",
    "OutboxFull",
    "OutboxStats",
    "Pending",
    "PutResult",
    "Write",
    "_digest",
    "cannot_write",
    "torn_wal",
]
