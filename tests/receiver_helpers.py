"""Shared plumbing for tests that deliver to the reference receiver (appliance.sim.receiver).

Readings to put in an outbox, an Uplink wired to a receiver through a real
config, a clock the test moves by hand, and a poll-until-true helper. Every
address is loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import base_tables

from appliance.config import parse_config
from appliance.outbox import Outbox
from appliance.records import Record
from appliance.uplink import Uplink

T0 = datetime(2025, 7, 22, 0, tzinfo=UTC)
KEY = "test-key-s3cret"


def readings(
    n: int, sensor: str = "cam-1", people: int = 3, start: int = 0, final: bool = True
) -> list[Record]:
    """``n`` hourly region counts of ``sensor``; the same arguments give the same ids and values."""
    return [
        Record(
            sensor,
            "region_counts",
            T0 + timedelta(hours=h),
            T0 + timedelta(hours=h + 1),
            {"regions": {"1": people + h}},
            final,
            "poll",
        )
        for h in range(start, start + n)
    ]


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = 1_753_171_200.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_uplink(
    tmp_path: Path,
    url: str,
    api_key: str = KEY,
    clock: Callable[[], float] = time.time,
    outbox: Outbox | None = None,
    **uplink: Any,
) -> tuple[Uplink, Outbox]:
    """An Uplink built from a real config (``uplink`` overrides [uplink] keys) on an outbox in tmp_path."""
    tables = base_tables(tmp_path, url, api_key=api_key)
    tables["uplink"].update(uplink)
    outbox = outbox or Outbox(tmp_path / "outbox.db")
    return Uplink(parse_config(tables), outbox, clock=clock), outbox


def drain(uplink: Uplink, limit: int = 500) -> None:
    """deliver_once until the outbox has nothing pending (bounded, so a loop fails the test)."""
    for _ in range(limit):
        if not uplink.outbox.take(1):
            return
        uplink.deliver_once()
    raise AssertionError(f"outbox did not drain: {uplink.snapshot()}")
