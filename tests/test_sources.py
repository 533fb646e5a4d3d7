"""Sources as plugins: a sensor family is a table, a source class and one row of ``SOURCES``.

The headline test registers a family the bridge has never heard of, a tiny
"file-replay" source written here, and watches its readings take the
collector's normal path: the config file (its own keys, checked), the table,
the schedule, the poll lanes, the outbox (readings and cursor in one
transaction) and the uplink, into the simulated cloud.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import base_tables, wait_for, write_config

from appliance import records
from appliance.collector import Collector
from appliance.config import ConfigError, load_config, parse_config, reference
from appliance.config_keys import REQUIRED, number, text
from appliance.outbox import Outbox
from appliance.records import Record, now_utc
from appliance.sim.receiver import SimReceiver
from appliance.sources import SOURCES, Family, load
from appliance.sources.base import PollOutcome, SensorConfig, Source, source_for
from appliance.sources.milesight_http import CameraConfig, CameraPoller


@dataclass(kw_only=True)
class ReplayConfig(SensorConfig):
    """Occupancy counts replayed from a file, one JSON number a line."""

    path: str = text(REQUIRED, "the file to replay")
    every_s: float = number(0.2, "seconds between reads of the file")


class FileReplay(Source):
    """Each poll stores the lines added since the last one: its cursor is the number of lines read."""

    config = ReplayConfig
    kinds = ("occupancy",)
    sensor: ReplayConfig

    def schedule(self) -> list[tuple[str, float]]:
        return [("occupancy", self.sensor.every_s)]

    def poll(self, kind: str) -> PollOutcome:
        now = now_utc()
        done = int(self.outbox.cursor(self.sensor.id, kind) or 0)
        lines = Path(self.sensor.path).read_text().splitlines()
        hour = datetime(2025, 7, 22, 9, tzinfo=UTC)
        fresh = [
            Record(
                self.sensor.id,
                kind,
                hour + timedelta(hours=n),
                hour + timedelta(hours=n + 1),
                {"current_total": json.loads(line), "max": None, "regions": {}},
                True,
                "poll",
                observed_at=now,
            )
            for n, line in enumerate(lines)
            if n >= done
        ]
        stored = self.outbox.put(fresh, cursors=[(self.sensor.id, kind, str(len(lines)))])
        return PollOutcome(self.sensor.id, kind, True, now, records=len(fresh), stored=stored)


@pytest.fixture
def file_replay(monkeypatch: pytest.MonkeyPatch) -> type[Source]:
    # A row names its table and its source as "module:Class", imported when first asked for.
    here = FileReplay.__module__
    monkeypatch.setitem(
        SOURCES, "file-replay", Family(table=f"{here}:ReplayConfig", source=f"{here}:FileReplay")
    )
    return FileReplay


def test_a_new_family_is_one_class_and_one_row_and_its_readings_reach_the_cloud(
    tmp_path: Path, file_replay: type[Source]
) -> None:
    replay = tmp_path / "shelf.txt"
    replay.write_text("3\n5\n8\n")
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as receiver:
        tables = base_tables(tmp_path, receiver.url)
        tables["sensors"] = [{"id": "shelf", "type": "file-replay", "path": str(replay)}]
        config = load_config(write_config(tmp_path / "config.toml", tables))
        assert isinstance(config.sensors[0], ReplayConfig) and config.sensors[0].every_s == 0.2

        def totals() -> list[int]:
            held = sorted(
                (r["period_start"], r["values"]["current_total"])
                for r in receiver.records().values()
                if r["sensor_id"] == "shelf" and r["kind"] == "occupancy"
            )
            return [total for _, total in held]

        collector = Collector(config)
        runner = threading.Thread(target=collector.run, daemon=True)
        runner.start()
        try:
            wait_for(
                lambda: totals() == [3, 5, 8], timeout=20, what="the replayed readings in the cloud"
            )
            with replay.open("a") as more:
                more.write("13\n")  # the cursor says three lines were read: only the fourth is new
            wait_for(
                lambda: totals() == [3, 5, 8, 13],
                timeout=20,
                what="the appended reading in the cloud",
            )
            assert collector.snapshot()["sensors"][0]["state"] == "ok"
        finally:
            collector.stop_event.set()
            runner.join(timeout=20)
        assert not runner.is_alive()


def test_a_new_familys_keys_are_checked_and_documented(
    tmp_path: Path, file_replay: type[Source]
) -> None:
    table = {"id": "shelf", "type": "file-replay", "every_s": 0, "url": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError) as caught:
        parse_config({**base_tables(tmp_path, "http://127.0.0.1:1"), "sensors": [table]})
    assert caught.value.problems == [
        "sensors[0].path: required",
        "sensors[0].every_s: expected a number > 0, got 0",
        "sensors[0].url: unknown key",  # a camera's key is not a replay's
    ]
    text = reference()
    assert '### `type = "file-replay"`' in text
    assert "Occupancy counts replayed from a file, one JSON number a line." in text
    assert "| `path` | required | the file to replay |" in text


def test_an_unknown_type_is_one_problem_naming_the_known_types(tmp_path: Path) -> None:
    sensor = {
        "id": "door",
        "type": "milesight-camra",
        "url": "http://127.0.0.1:1",
        "interval_s": 60,
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({**base_tables(tmp_path, "http://127.0.0.1:1"), "sensors": [sensor]})
    assert caught.value.problems == [
        "sensors[0].type: expected one of milesight-camera, got 'milesight-camra'"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {**base_tables(tmp_path, "http://127.0.0.1:1"), "sensors": [{**sensor, "type": 7}]}
        )
    assert caught.value.problems == ["sensors[0].type: expected a string, got 7"]


def test_a_sensor_of_an_unregistered_type_is_a_config_error_when_its_source_is_built(
    tmp_path: Path,
) -> None:
    """A config made in code (a bench, the demo) never reaches a camera poller by default."""
    outbox = Outbox(tmp_path / "outbox.db")
    with pytest.raises(ConfigError) as caught:
        source_for(SensorConfig(id="door", type="thermometer"), outbox)
    outbox.close()
    assert "type 'thermometer' is not one of milesight-camera" in str(caught.value)


def test_a_table_without_type_is_a_milesight_camera_with_its_old_defaults(tmp_path: Path) -> None:
    tables = {
        **base_tables(tmp_path, "http://127.0.0.1:1"),
        "sensors": [{"id": "door", "url": "http://127.0.0.1:1"}],
    }
    [sensor] = parse_config(tables).sensors
    assert type(sensor) is CameraConfig and sensor.type == "milesight-camera"
    assert (sensor.timezone, sensor.collect, sensor.interval_s, sensor.auth) == (
        "Europe/Lisbon",
        ["line_counts", "region_counts"],
        300,
        "auto",
    )


def test_the_contract_owns_the_kinds_and_each_source_collects_some_of_them() -> None:
    for name, family in SOURCES.items():
        source = load(family.source)
        assert load(family.table) is source.config, name
        assert source.kinds and set(source.kinds) <= set(records.KINDS), name
        assert set(source.snapshots) <= set(source.kinds), name
    assert CameraPoller.kinds == ("line_counts", "region_counts", "live_counts")


def test_doctor_reads_a_new_family_through_its_own_sample_and_says_when_it_cannot(
    tmp_path: Path, file_replay: type[Source], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doctor` and `sensors test` ask the sensor's own source for a sample, not the camera code."""
    from appliance.console import check_sensors

    replay = tmp_path / "shelf.txt"
    replay.write_text("3\n5\n")
    tables = base_tables(tmp_path, "http://127.0.0.1:9/ingest")
    tables["sensors"] = [{"id": "shelf", "type": "file-replay", "path": str(replay)}]
    config = load_config(write_config(tmp_path / "config.toml", tables))

    cannot = check_sensors(config)
    assert [f.verdict for f in cannot] == ["PASS", "FAIL"]
    assert "file-replay sensors cannot be read on demand" in cannot[1].detail

    def sample(cls: type[Source], sensor: SensorConfig, kind: str, hours: int) -> list[Record]:
        hour = datetime(2025, 7, 22, 9, tzinfo=UTC)
        return [
            Record(
                sensor.id,
                kind,
                hour,
                hour + timedelta(hours=1),
                {"current_total": 3, "max": None, "regions": {}},
                True,
                "poll",
            )
        ]

    monkeypatch.setattr(FileReplay, "sample", classmethod(sample))
    found = check_sensors(config)
    assert [f.verdict for f in found] == ["PASS", "PASS"]
    assert found[1].detail == "occupancy: 1 period(s) in the last 2 hours"
