"""The seam for push formats: adding one is one file and one row in FORMATS, as docs/sources.md says.

The worked example of docs/sources.md is taken from the page itself and run,
so the page cannot drift from what a newcomer's file must look like.
"""

from __future__ import annotations

import json
import re
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.config import MqttDevice
from appliance.push import formats
from appliance.push.format import PushFormat
from appliance.push.milesight import MilesightJson
from appliance.push.parser import PushParser

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
RECEIVED = datetime(2025, 7, 22, 9, 30, tzinfo=UTC)


def docs_example() -> type[PushFormat]:
    """The AcmeCounter class of docs/sources.md, loaded as if it were appliance/push/acme.py."""
    text = DOCS.read_text().split("## Devices that push", 1)[1]
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    module = types.ModuleType("appliance.push.acme")
    module.__package__ = "appliance.push"
    sys.modules[module.__name__] = module
    exec(compile(code, str(DOCS), "exec"), module.__dict__)
    return module.AcmeCounter


@pytest.fixture
def with_acme(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one row the page says to add, above the catch-all."""
    monkeypatch.setattr(
        formats, "FORMATS", [*formats.FORMATS[:-1], docs_example()(), MilesightJson()]
    )


def push(body: dict[str, Any], parser: PushParser | None = None, topic: str = "acme/door-7") -> Any:
    return (parser or PushParser()).parse(
        json.dumps(body).encode(), source="mqtt", topic=topic, origin=topic, received_at=RECEIVED
    )


ACME = {"acme_id": "door-7", "in": 3, "out": 1, "at": "2025-07-22T09:00:00Z"}


def test_the_documented_format_turns_its_messages_into_readings(with_acme: None) -> None:
    parsed = push(ACME)
    assert parsed.dead == []
    [totals] = parsed.records
    assert (totals.sensor_id, totals.kind) == ("door-7", "line_totals")
    assert totals.period_start == totals.period_end == datetime(2025, 7, 22, 9, tzinfo=UTC)
    assert totals.values == {"total": {"in": 3, "out": 1}, "lines": {"1": {"in": 3, "out": 1}}}
    # The config's device table names the sensor, as for every other format.
    named = PushParser([MqttDevice(sensor_id="front-door", serial="door-7")])
    assert push(ACME, named).records[0].sensor_id == "front-door"


def test_a_broken_message_of_the_new_format_is_dead_lettered_with_its_reason(
    with_acme: None,
) -> None:
    missing = push({k: v for k, v in ACME.items() if k != "at"})
    assert missing.records == [] and "at: missing" in missing.dead[0].reason
    # Values the cloud would refuse are caught by the parser, not by each format.
    refused = push({**ACME, "in": "three"})
    assert refused.records == [] and "values.total: must be" in refused.dead[0].reason


def test_without_its_row_the_same_message_is_only_kept_as_an_event() -> None:
    [event] = push(ACME).records
    assert event.kind == "event" and event.values["payload"] == ACME


def test_the_catch_all_comes_last_and_every_row_is_a_push_format() -> None:
    assert all(isinstance(f, PushFormat) for f in formats.FORMATS)
    assert isinstance(formats.FORMATS[-1], MilesightJson)
    assert not any(isinstance(f, MilesightJson) for f in formats.FORMATS[:-1])
