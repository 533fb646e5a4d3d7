"""The reading kinds are data in one home (appliance/kinds.py): the door, the reference receiver
and the cloud's newest migration must all say the same kinds and the same value keys."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import REPO

from appliance import records
from appliance.kinds import KINDS, TABLE
from appliance.sim import receiver
from appliance.sources.lorawan.readings import AMBIENCE

MIGRATIONS = REPO / "cloud" / "supabase" / "migrations"


def newest_values_migration() -> str:
    """The newest migration that (re)defines which kinds and value keys the cloud accepts."""
    for path in sorted(MIGRATIONS.glob("*.sql"), reverse=True):
        sql = path.read_text()
        if "function public.bridge_values_error" in sql:
            return sql
    raise AssertionError(f"no migration in {MIGRATIONS} defines bridge_values_error")


def sql_list(text: str) -> list[str]:
    """``'a', 'b'`` -> [a, b]; ``'{a,b}'`` -> [a, b]."""
    if text.startswith("'{"):
        return text.strip("'{}").split(",")
    return re.findall(r"'([^']*)'", text)


def cloud_value_keys(sql: str) -> dict[str, tuple[set[str], set[str]]]:
    """kind -> (allowed keys, required keys) as bridge_values_error checks them."""
    body = sql[sql.index("function public.bridge_values_error") :]
    body = body[: body.index("$$;")]
    found: dict[str, tuple[set[str], set[str]]] = {}
    arms = re.split(r"\n    when kind ", body)[1:]
    for arm in arms:
        head = re.match(r"(?:= '(\w+)'|in \(([^)]*)\)) then case", arm)
        assert head, arm[:80]
        kinds = [head.group(1)] if head.group(1) else sql_list(head.group(2))
        allowed_m = re.search(r"\(v - ('\{[^}]*\}'|'\w+')(?:::text\[\])?\)", arm)
        required_m = re.search(r"v \?& ('\{[^}]*\}')|v \? '(\w+)'", arm)
        allowed = set(sql_list(allowed_m.group(1))) if allowed_m else set()
        if required_m:
            required = set(
                sql_list(required_m.group(1)) if required_m.group(1) else [required_m.group(2)]
            )
        else:
            required = set()
        for kind in kinds:
            found[kind] = (allowed, required)
    return found


def test_the_newest_migration_accepts_exactly_the_tables_kinds_in_its_order() -> None:
    sql = newest_values_migration()
    constraint = re.search(r"check \(kind in \(([^)]*)\)\)", sql, re.S)
    assert constraint, "the migration re-adds bridge_readings_kind_check"
    assert sql_list(constraint.group(1)) == list(KINDS)
    door = re.search(r"r ->> 'kind' not in \(([^)]*)\)", sql)
    assert door and sql_list(door.group(1)) == list(KINDS)
    assert f"'kind: must be one of {', '.join(KINDS)}'" in sql


def test_the_newest_migration_checks_each_kinds_value_keys_as_the_table_says() -> None:
    cloud = cloud_value_keys(newest_values_migration())
    assert set(cloud) == set(KINDS)
    for name, kind in TABLE.items():
        allowed, required = cloud[name]
        assert allowed == set(kind.allowed), name
        assert required == set(kind.required), name


def test_the_newest_migration_names_every_ambience_measurement_twice_the_same() -> None:
    sql = newest_values_migration()
    arm = sql[sql.index("when kind = 'ambience'") :]
    arm = arm[: arm.index("when kind = ", 10)]
    lists = re.findall(r"v - ('\{[^}]*\}')::text\[\]", arm)
    assert len(lists) == 2, lists
    for found in lists:
        assert set(sql_list(found)) == set(TABLE["ambience"].measurements)


def test_every_measurement_carries_its_unit() -> None:
    for name, kind in TABLE.items():
        for key, unit in kind.measurements.items():
            assert unit.strip(), (name, key)


def test_every_lorawan_measurement_is_one_the_table_knows() -> None:
    assert set(AMBIENCE.values()) <= set(TABLE["ambience"].measurements)


def wire(kind: str, values: Any) -> dict[str, Any]:
    start = "2025-07-22T09:00:00Z"
    return {
        "id": records.record_id("cam-1", kind, start),
        "sensor_id": "cam-1",
        "kind": kind,
        "period_start": start,
        "period_end": start,
        "final": True,
        "revision": 1,
        "source": "poll",
        "observed_at": start,
        "values": values,
    }


GOOD = {
    "line_counts": {"total": {"in": 1, "out": 2}, "lines": {"1": {"in": 1, "out": 2}}},
    "line_totals": {"total": {"in": 1, "out": 2}, "lines": {"1": {"in": 1, "out": 2}}},
    "region_counts": {"regions": {"1": 3}},
    "live_counts": {"in": 1, "out": 2, "sum": 3, "capacity": 4},
    "occupancy": {"current_total": 2, "max": None, "regions": {"1": 2}, "occupied": {"1": True}},
    "event": {"event": "alarm", "payload": {}},
    "dwell": {"regions": {"1": {"avg": 3, "max": 9}}},
    "ambience": {"temperature_c": 21.5, "co2_ppm": 600},
}


def test_every_kind_has_a_good_example() -> None:
    assert set(GOOD) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_door_and_the_receiver_take_the_keys_the_table_allows(kind: str) -> None:
    good = wire(kind, GOOD[kind])
    assert records.contract_problem(good) is None
    assert receiver.record_problem(good) is None
    stray = wire(kind, {**GOOD[kind], "stray": 1})
    assert records.contract_problem(stray) is not None
    assert receiver.record_problem(stray) is not None
    for key in TABLE[kind].required:
        short = wire(kind, {k: v for k, v in GOOD[kind].items() if k != key})
        assert records.contract_problem(short) is not None, key
        assert receiver.record_problem(short) is not None, key


def test_a_row_added_to_the_table_is_a_kind_the_door_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The door reads its value keys from the table, not from a copy: a key the table
    allows is taken, one it does not is refused."""
    from appliance.kinds import Kind

    relaxed = Kind("dwell", frozenset({"regions"}), frozenset({"note"}))
    monkeypatch.setitem(TABLE, "dwell", relaxed)
    with_note = wire("dwell", {**GOOD["dwell"], "note": "x"})
    assert records.contract_problem(with_note) is None
    assert receiver.record_problem(with_note) is None
    monkeypatch.undo()
    assert "dwell needs exactly the keys regions" in str(records.contract_problem(with_note))
