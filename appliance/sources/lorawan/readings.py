"""Decoded Milesight LoRaWAN values -> records (docs/milesight.md, "LoRaWAN").

The names are the vendor's (what its decoders print, and what a UG6x payload
codec, ChirpStack or The Things Stack codec hands over), so the same mapping
serves frames decoded here and frames decoded upstream.

* period in/out (``line_N_period_in``, VS350 ``period_in``, VS121 ``people_in``,
  else VS121 ``line_in``) -> ``line_counts`` for the ``period_s`` before the
  uplink's moment;
* running totals (``line_N_total_in``, ``total_in``, ``people_total_in``) ->
  ``line_totals``, a snapshot at that moment;
* a VS13x's child counts (``line_N_child_...``) -> the same readings, as line
  ``"N_child"`` beside the adults' line ``"N"`` (the total is everyone's);
* people present (``people_count_all``, ``region_N_count``, region flags,
  VS330 ``occupancy``) -> ``occupancy``, a snapshot (children: region ``"N_child"``);
* ``region_N_avg_dwell`` / ``_max_dwell`` -> ``dwell``, a snapshot (children:
  region ``"N_child"``);
* room and device measurements -> ``ambience``, a snapshot;
* everything else (alarms, flows between areas, versions, settings, a line
  with only one direction, a frame's undecoded rest) -> one ``event``, so
  nothing a device said is dropped.

The moment is the frame's own ``timestamp`` when it carries a plausible one,
else the network's receive time. ``history`` entries are the readings of
their own moment: entries with the same ``timestamp`` (a VS13x or VS121
re-sends one channel per entry) are read together, so the in and out of a line
meet again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ...clock import EARLIEST, LATEST
from ...errors import MessageError
from ...records import Record

AMBIENCE = {
    "battery": "battery_pct",
    "temperature": "temperature_c",
    "humidity": "humidity_pct",
    "pir": "pir",
    "light_level": "light_level",
    "co2": "co2_ppm",
    "tvoc_ugm3": "tvoc_ugm3",
    "pressure": "pressure_hpa",
    "hcho": "hcho_mgm3",
    "pm2_5": "pm2_5_ugm3",
    "pm10": "pm10_ugm3",
    "o3": "o3_ppm",
    "distance": "distance_mm",
}
WORDS = {"trigger": 1, "idle": 0, "occupied": 1, "vacant": 0}
_LINE = re.compile(r"^line_(\d+(?:_child)?)_(period|total)_(in|out)$")
_REGION_COUNT = re.compile(r"^region_(\d+(?:_child)?)_count$")
_REGION_FLAG = re.compile(r"^region_(\d+)$")
_DWELL = re.compile(r"^region_(\d+(?:_child)?)_(avg|max)_dwell$")
# A single line's pairs, named per model, first found first taken:
# (period in, period out, total in, total out).
FLAT_LINES = (
    ("period_in", "period_out", "total_in", "total_out"),
    ("people_in", "people_out", "people_total_in", "people_total_out"),
    ("line_in", "line_out", "", ""),
)
PARTLY = "lorawan frame partly decoded"


class UplinkError(MessageError):
    """Decoded values that cannot become records; the text says which."""


class Mapper:
    """One uplink's (or history entry's) values, consumed key by key into records."""

    def __init__(self, values: dict[str, Any], make: Any) -> None:
        self.left = dict(values)
        self.make = make  # (kind, start, end, values) -> Record
        self.records: list[Record] = []

    def take(self, key: str) -> Any:
        return self.left.pop(key)

    def lines(self) -> None:
        found: dict[str, dict[str, dict[str, Any]]] = {"period": {}, "total": {}}
        for key in [k for k in self.left if _LINE.match(k)]:
            line, what, direction = _LINE.match(key).groups()  # type: ignore[union-attr]
            found[what].setdefault(line, {})[direction] = key
        for period_in, period_out, total_in, total_out in FLAT_LINES:
            for what, key_in, key_out in (
                ("period", period_in, period_out),
                ("total", total_in, total_out),
            ):
                if key_in in self.left and key_out in self.left and "1" not in found[what]:
                    found[what]["1"] = {"in": key_in, "out": key_out}
        for what, kind in (("period", "line_counts"), ("total", "line_totals")):
            whole = {
                line: keys
                for line, keys in found[what].items()
                if _count(self.left.get(keys.get("in", "")))
                and _count(self.left.get(keys.get("out", "")))
            }
            if whole:
                lines = {
                    line: {"in": self.take(k["in"]), "out": self.take(k["out"])}
                    for line, k in whole.items()
                }
                total = {
                    d: sum(c[d] for c in lines.values()) if _all_counts(lines) else -1
                    for d in ("in", "out")
                }
                self.records.append(
                    self.make(kind, {"total": total, "lines": lines}, period=what == "period")
                )

    def occupancy(self) -> None:
        counts = {
            m.group(1): k
            for k in self.left
            if (m := _REGION_COUNT.match(k)) and _count(self.left[k])
        }
        flags = {
            m.group(1): k
            for k in self.left
            if (m := _REGION_FLAG.match(k)) and isinstance(_flag(self.left[k]), bool)
        }
        if "occupancy" in self.left and not isinstance(_flag(self.left["occupancy"]), bool):
            return  # "unknown": kept in the event as the device said it
        if (
            not counts
            and not flags
            and "people_count_all" not in self.left
            and "occupancy" not in self.left
        ):
            return
        regions = {n: self.take(k) for n, k in counts.items()}
        values: dict[str, Any] = {"current_total": None, "max": None, "regions": regions}
        if flags:
            values["occupied"] = {n: _flag(self.take(k)) for n, k in flags.items()}
            self.left.pop("region_count", None)
        if "occupancy" in self.left:  # VS330: one stall, occupied or vacant
            occupied = _flag(self.take("occupancy"))
            values["occupied"] = {"1": occupied}
            values["current_total"] = 1 if occupied is True else 0
        if "people_count_all" in self.left:
            values["current_total"] = self.take("people_count_all")
        elif values["current_total"] is None:
            values["current_total"] = sum(regions.values()) if _all_counts(regions) else -1
        if "people_count_max" in self.left:
            values["max"] = self.take("people_count_max")
        self.records.append(self.make("occupancy", values))

    def dwell(self) -> None:
        found: dict[str, dict[str, str]] = {}
        for key in [k for k in self.left if _DWELL.match(k)]:
            region, which = _DWELL.match(key).groups()  # type: ignore[union-attr]
            found.setdefault(region, {})[which] = key
        whole = {
            r: keys
            for r, keys in found.items()
            if set(keys) == {"avg", "max"} and all(_count(self.left[k]) for k in keys.values())
        }
        if whole:
            regions = {
                r: {"avg": self.take(k["avg"]), "max": self.take(k["max"])}
                for r, k in whole.items()
            }
            self.records.append(self.make("dwell", {"regions": regions}))

    def ambience(self) -> None:
        values = {
            name: _number(self.take(key))
            for key, name in AMBIENCE.items()
            if key in self.left and _is_number(_number(self.left[key]))
        }
        if "tvoc" in self.left and _is_number(self.left["tvoc"]):
            tvoc = self.take("tvoc")
            values[_tvoc_unit(tvoc)] = tvoc
        if values:
            self.records.append(self.make("ambience", values))

    def event(self, about: dict[str, Any], always: bool = False) -> None:
        """What is left, as one event; ``always`` makes one even of nothing (an uplink that
        said nothing this bridge names is still kept, never silently dropped)."""
        if self.left or always:
            name = PARTLY if "undecoded" in self.left else "lorawan uplink"
            self.records.append(
                self.make("event", {"event": name, "payload": {**about, **self.left}})
            )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _all_counts(mapping: dict[str, Any]) -> bool:
    return all(
        isinstance(v, int) and not isinstance(v, bool)
        for v in (
            x
            for value in mapping.values()
            for x in (value.values() if isinstance(value, dict) else [value])
        )
    )


def _flag(value: Any) -> Any:
    """1/0, true/false or the vendor's words as true/false; anything else as it came (the door refuses it)."""
    if isinstance(value, str):
        value = WORDS.get(value.strip().lower(), value)
    if isinstance(value, bool):
        return value
    return bool(value) if value in (0, 1) else value


def _number(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in WORDS:
        return WORDS[value.strip().lower()]
    return value


def _tvoc_unit(value: Any) -> str:
    """A ``tvoc`` decoded upstream carries no unit: the IAQ index runs 0..5 with decimals; µg/m³ are whole."""
    if isinstance(value, float) and not value.is_integer():
        return "tvoc_iaq"
    return "tvoc_iaq" if isinstance(value, int | float) and value <= 5 else "tvoc_ugm3"


def _by_moment(history: list[Any]) -> list[dict[str, Any]]:
    """History entries with the same timestamp as one (the VS13x and VS121 send a channel each)."""
    merged: dict[Any, dict[str, Any]] = {}
    for entry in history:
        if not isinstance(entry, dict) or device_moment(entry) is None:
            raise UplinkError(f"history entry {entry!r} has no timestamp between 2000 and 2099")
        merged.setdefault(entry["timestamp"], {}).update(entry)
    return list(merged.values())


def device_moment(values: dict[str, Any]) -> datetime | None:
    """The frame's own ``timestamp`` (seconds since 1970) when it reads as a time this century."""
    stamp = values.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        return None
    try:
        moment = datetime.fromtimestamp(stamp, UTC).replace(microsecond=0)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if EARLIEST <= moment < LATEST else None


def records_for(
    values: dict[str, Any],
    *,
    sensor_id: str,
    at: datetime,
    period_s: float,
    source: str,
    observed: datetime,
    about: dict[str, Any],
) -> list[Record]:
    """The records one decoded uplink becomes (its history entries included), one per id."""
    history = values.get("history")
    values = {k: v for k, v in values.items() if k != "history"}
    own = device_moment(values)
    if own is not None:
        at = own
        if len(values) > 1 or history:  # a time alone (a reply to a time downlink) is the event
            values.pop("timestamp")
    span = timedelta(seconds=period_s)

    def make(kind: str, vals: dict[str, Any], period: bool = False) -> Record:
        start = at - span if period else at
        return Record(sensor_id, kind, start, at, vals, True, source, observed)

    mapper = Mapper(values, make)
    mapper.lines()
    mapper.occupancy()
    mapper.dwell()
    mapper.ambience()
    mapper.event(about, always=not mapper.records and not history)
    out = {r.id: r for r in mapper.records}
    for entry in _by_moment(history if isinstance(history, list) else []):
        for record in records_for(
            entry,
            sensor_id=sensor_id,
            at=at,
            period_s=period_s,
            source=source,
            observed=observed,
            about=about,
        ):
            out[record.id] = record
    return list(out.values())
