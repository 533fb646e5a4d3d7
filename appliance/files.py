"""Replacing a file so that a reader, a crash or a power cut only ever sees the old or the new one.

Every file the appliance rewrites goes through :func:`write_atomic`: status
files, the outbox damage notes, the watchdog's reboot budget, maintenance
mode, the imported config and mosquitto's files (a broker secret included).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def sync_dir(path: str | Path) -> None:
    """Make a rename or removal in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | Path, data: str | bytes, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> None:
    """Replace ``path`` with ``data``, whole: readers see the old file or the new one.

    The new file is written next to the old one, flushed to disk, given its mode
    (and ``owner``, a (uid, gid)) and only then renamed into place, so it is never
    readable by anyone ``mode`` does not allow, whatever the umask. A file
    system without permissions (the FAT boot partition) keeps its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.chmod(tmp, mode)
        except PermissionError:  # FAT mounted without permission support
            pass
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_dir(path.parent)
