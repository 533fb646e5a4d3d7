"""What can go wrong with the outbox file itself: damage, a torn write-ahead log, a full disk.

A corrupt file is moved aside (``outbox.db.corrupt-<time>``) and a fresh
outbox started, so a damaged SD card sector can never put the service into a
crash loop; a write-ahead log cut short is reported. Both stay visible
(``damage.json`` beside the outbox, read by every service's status) until a
person runs ``sensor-bridge outbox ack-corrupt``.

:func:`cannot_write` is the one answer to "can the outbox be written right
now?", asked by every writer (the collector's polls, the relay's messages).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import struct
import time
from pathlib import Path

from ..errors import BridgeError
from ..outbox_damage import OutboxDamage

log = logging.getLogger("sensor-bridge.outbox")


class _Corrupt(sqlite3.DatabaseError):
    """quick_check found damage."""


class OutboxFull(BridgeError, sqlite3.OperationalError):
    """The disk has no room for this write; nothing of it was stored."""


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Damage to the file itself, as opposed to a lock or a transient I/O error."""
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "malformed" in str(exc) or "not a database" in str(exc)


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return "disk is full" in str(exc)


def cannot_write(exc: BaseException) -> bool:
    """The outbox file cannot be written right now (disk full, I/O error, locked too long,
    read-only, damaged), as opposed to one caller's data it cannot take (a reading or cursor
    SQLite cannot hold). Only this fails every put of a transaction alike, and only this is
    worth waiting for: the writer keeps what it has and tries again later."""
    if isinstance(exc, OSError):  # the disk itself: full, failing, or mounted read-only
        return exc.errno in (errno.ENOSPC, errno.EIO, errno.EROFS)
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError):
        return True  # OutboxFull, "database is locked", "disk I/O error", ...
    if isinstance(exc, sqlite3.DatabaseError):
        return type(exc) is sqlite3.DatabaseError or is_corruption(exc)
    return False


def torn_wal(path: str | Path) -> str | None:
    """Why ``path``'s write-ahead log was cut short, or None when it is whole (or absent).

    A WAL is a 32-byte header and frames of 24 bytes plus one page; anything
    else means its tail was lost (a power cut on a card that reorders writes, a
    copy cut short). SQLite would silently ignore the torn tail.
    """
    wal = Path(f"{path}-wal")
    try:
        size = wal.stat().st_size
        with open(wal, "rb") as f:
            header = f.read(32)
    except OSError:
        return None
    if size == 0:
        return None
    if len(header) < 32:
        return f"its write-ahead log {wal.name} is only {size} bytes, less than a header"
    page_size = struct.unpack(">I", header[8:12])[0]
    frame = 24 + page_size
    # A writer killed between a frame's header and its page (two writes) leaves exactly a
    # header behind: that transaction never committed, so nothing acknowledged is missing.
    if (size - 32) % frame in (0, 24):
        return None
    time.sleep(0.2)  # a writer in another process may be appending this very moment
    try:
        if wal.stat().st_size != size:
            return None
    except OSError:
        return None
    return (
        f"its write-ahead log {wal.name} was cut short ({size} bytes is not a whole number of"
        f" {frame}-byte frames): the last writes before the cut may be lost"
    )


def move_aside(path: Path, why: str, notes: OutboxDamage) -> None:
    """Move a corrupt outbox file (and its log) out of the way, and note it for a person."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    reason = f"outbox {path} was corrupt ({why}); moved to {aside}, started empty"
    log.error("%s", reason)
    notes.add("corrupt", reason)
