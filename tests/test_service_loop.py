"""Every service starts and stops the same way (appliance/service.py): a stop is clean even mid-start."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from conftest import free_port, wait_for, write_config
from mqtt_helpers import RelayProcess, relay_tables


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_a_stop_while_the_relay_opens_its_outbox_ends_it_cleanly(tmp_path: Path) -> None:
    """systemctl stop during a slow start (the outbox locked by another process): the relay still
    stops cleanly, instead of dying on the signal because its handlers were not in place yet."""
    config = write_config(
        tmp_path / "config.toml", relay_tables(tmp_path, None, push_port=free_port())
    )
    outbox = tmp_path / "state" / "outbox.db"
    outbox.parent.mkdir(parents=True)
    holder = sqlite3.connect(outbox, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the relay's open waits for this lock (busy_timeout)
    relay = RelayProcess(config, tmp_path / "run", tmp_path / "relay.log").start()
    try:
        assert relay.proc is not None
        wait_for(
            lambda: _has_open(relay.proc.pid, outbox), 30, "the relay to be opening its outbox"
        )
        relay.proc.terminate()
        holder.execute("ROLLBACK")
        holder.close()
        code = relay.proc.wait(timeout=30)
    finally:
        if relay.proc and relay.proc.poll() is None:
            relay.proc.kill()
            relay.proc.wait(timeout=10)
    log = (tmp_path / "relay.log").read_text()
    assert code == 0, f"exit {code}: {log[-2000:]}"
    assert "received SIGTERM" in log and "stopped cleanly" in log, log[-2000:]
