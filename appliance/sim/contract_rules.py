"""The ingest contract's rules, as the reference receiver reads them (docs/ingest-contract.md).

Every header and field check of a batch, a record and a heartbeat, in the same order
as the cloud's Next.js routes; each says what is wrong by naming the field. The
receiver (receiver.py) answers with them; the conformance suite compares them with the
cloud's reading of the same contract.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

# The contract's vocabulary (kinds, fields, sources, time format) has one home; how a receiver
# checks a batch against it stays its own, so the conformance suite compares two readings of it.
from ..clock import UTC_TEXT_PATTERN as UTC_TEXT
from ..kinds import KINDS, TABLE
from ..records import RECORD_FIELDS, SOURCES

SCHEMA = "sensor-bridge/ingest/v1"
HEARTBEAT_SCHEMA = "sensor-bridge/heartbeat/v1"
INGEST_PATH = "/api/bridge/v1/ingest"
# Adoption (docs/ingest-contract.md, "Adoption"): a bridge enrolls, then reads its config.
ENROLL_PATH = "/api/bridge/v1/enroll"
CONFIG_PATH = "/api/bridge/v1/config"
SCAN_PATH = "/api/bridge/v1/scan"

BRIDGE_STATES = ("ok", "degraded", "error", "starting", "no-config", "maintenance")
BATCH_FIELDS = ("schema", "bridge_id", "batch_id", "sent_at", "records")
HEARTBEAT_FIELDS = (
    "schema",
    "bridge_id",
    "version",
    "sent_at",
    "uptime_s",
    "state",
    "outbox",
    "sensors",
    "host",
)
# Optional heartbeat keys (strings): the bridge's WireGuard public key, what its last update did.
HEARTBEAT_OPTIONAL = ("wireguard_public_key", "last_update")
# An adopted bridge's: where its config comes from, and what became of the last cloud version.
HEARTBEAT_ADOPTION = ("config_source", "config")
CONFIG_STATUSES = ("applied", "pending", "rolled_back", "invalid")
RECORD_ID = re.compile(r"^[0-9a-f]{64}$")
BIGGEST = 2**63 - 1  # counts and revisions are stored as 64-bit integers, here and in the cloud


# ---------------------------------------------------------------- the contract's rules


def utc_problem(name: str, value: Any, whole_seconds: bool = False) -> str | None:
    """Why ``value`` is not RFC 3339 UTC with ``Z`` (and a real date), or None."""
    example = "e.g. 2025-07-22T09:00:00Z"
    match = UTC_TEXT.match(value) if isinstance(value, str) else None
    if not match or (whole_seconds and match.group(7)):
        precision = ", whole seconds" if whole_seconds else ""
        return f"{name}: must be RFC 3339 UTC with Z{precision}, {example}"
    try:
        datetime(*(int(g) for g in match.groups()[:6]))
    except ValueError:
        return f"{name}: {value} is not a real date and time"
    return None


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= BIGGEST


def _named(v: Any, each: Any) -> bool:
    """A map of lines or regions: every name non-empty, every value passing ``each``."""
    return isinstance(v, dict) and all(name and each(x) for name, x in v.items())


def _in_out(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"in", "out"} and _count(v["in"]) and _count(v["out"])


def _exact_keys(v: dict[str, Any], kind: str) -> str | None:
    """The keys appliance/kinds.py gives ``kind``: all it requires, none it does not allow."""
    spec = TABLE[kind]
    if not spec.required <= set(v) <= spec.allowed:
        extra = f" (optionally {', '.join(sorted(spec.optional))})" if spec.optional else ""
        return f"values: {kind} needs exactly the keys {', '.join(sorted(spec.required))}{extra}"
    return None


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x and abs(x) <= BIGGEST


def _ambience_problem(v: dict[str, Any]) -> str | None:
    if not v:
        return "values: ambience needs at least one measurement"
    unknown = sorted(set(v) - TABLE["ambience"].allowed)
    if unknown:
        return f"values: ambience does not know {', '.join(json.dumps(k) for k in unknown)}"
    bad = sorted(k for k, x in v.items() if not _finite(x))
    return f"values.{bad[0]}: must be a finite number" if bad else None


def _occupancy_problem(v: dict[str, Any]) -> str | None:
    if problem := _exact_keys(v, "occupancy"):
        return problem
    if not _count(v["current_total"]):
        return "values.current_total: must be an int >= 0"
    if v["max"] is not None and not _count(v["max"]):
        return "values.max: must be an int >= 0 or null"
    if not _named(v["regions"], _count):
        return "values.regions: must map each region to an int >= 0"
    if "occupied" in v and not _named(v["occupied"], lambda x: isinstance(x, bool)):
        return "values.occupied: must map each region to true or false"
    if "region_names" in v and not _named(
        v["region_names"], lambda x: isinstance(x, str) and x != ""
    ):
        return "values.region_names: must map each region to a non-empty name"
    return None


def _dwell(x: Any) -> bool:
    return (
        isinstance(x, dict) and set(x) == {"avg", "max"} and _count(x["avg"]) and _count(x["max"])
    )


def values_problem(kind: str, v: Any) -> str | None:
    """Why ``v`` is not a valid ``values`` object for ``kind`` (None when it is)."""
    if not isinstance(v, dict):
        return "values: must be an object"
    if kind in ("line_counts", "line_totals"):
        if problem := _exact_keys(v, kind):
            return problem
        if not _in_out(v["total"]):
            return 'values.total: must be {"in": int >= 0, "out": int >= 0}'
        if not _named(v["lines"], _in_out):
            return 'values.lines: must map each line to {"in": int >= 0, "out": int >= 0}'
    elif kind == "occupancy":
        return _occupancy_problem(v)
    elif kind == "region_counts":
        if problem := _exact_keys(v, kind):
            return problem
        if not _named(v["regions"], _count):
            return "values.regions: must map each region to an int >= 0"
    elif kind == "dwell":
        if problem := _exact_keys(v, kind):
            return problem
        if not _named(v["regions"], _dwell):
            return 'values.regions: must map each region to {"avg": int >= 0, "max": int >= 0}'
    elif kind == "ambience":
        return _ambience_problem(v)
    elif kind == "live_counts":
        if problem := _exact_keys(v, kind):
            return problem
        if not all(_count(x) for x in v.values()):
            return "values: in, out, sum and capacity must be ints >= 0"
    else:
        if problem := _exact_keys(v, kind):
            return problem
        if not isinstance(v["event"], str):
            return "values.event: must be a string"
        if not isinstance(v["payload"], dict):
            return "values.payload: must be an object"
    return None


def _keys_problem(what: str, body: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """Keys the contract does not know (a typo must not pass silently), then keys it needs."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        return f"{what}: unknown key(s) {', '.join(unknown)}"
    missing = [k for k in fields if k not in body]
    if missing:
        return f"{what}: missing key(s) {', '.join(missing)}"
    return None


def record_problem(r: Any) -> str | None:
    """Why record ``r`` breaks the contract (None when it is valid); the message names the field."""
    if not isinstance(r, dict):
        return "record: must be an object"
    if problem := _keys_problem("record", r, RECORD_FIELDS):
        return problem
    if not isinstance(r["id"], str) or not RECORD_ID.match(r["id"]):
        return "id: must be 64 lowercase hex characters"
    if not isinstance(r["sensor_id"], str) or not 1 <= len(r["sensor_id"]) <= 256:
        return "sensor_id: must be a non-empty string of at most 256 characters"
    if r["kind"] not in KINDS:
        return f"kind: must be one of {', '.join(KINDS)}"
    if problem := utc_problem("period_start", r["period_start"], whole_seconds=True):
        return problem
    want = hashlib.sha256(f"{r['sensor_id']}|{r['kind']}|{r['period_start']}".encode()).hexdigest()
    if r["id"] != want:
        return "id: is not sha256(sensor_id|kind|period_start)"
    if problem := utc_problem("period_end", r["period_end"]):
        return problem
    if _moment(r["period_end"]) < _moment(r["period_start"]):
        return "period_end: is before period_start"
    if not isinstance(r["final"], bool):
        return "final: must be true or false"
    if not _count(r["revision"]) or r["revision"] < 1:
        return "revision: must be an integer >= 1"
    if r["source"] not in SOURCES:
        return f"source: must be one of {', '.join(SOURCES)}"
    if problem := utc_problem("observed_at", r["observed_at"]):
        return problem
    if r["kind"] == "live_counts" and (
        _moment(r["period_end"]) != _moment(r["period_start"]) or not r["final"]
    ):
        return "live_counts: a snapshot needs period_start == period_end and final true"
    return values_problem(r["kind"], r["values"])


def batch_problem(body: Any, idempotency_key: str | None) -> str | None:
    """Why the batch envelope breaks the contract (the whole batch is refused with 400), or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if problem := _keys_problem("batch", body, BATCH_FIELDS):
        return problem
    if body["schema"] != SCHEMA:
        return f'schema: must be "{SCHEMA}"'
    if not isinstance(body["bridge_id"], str) or not 1 <= len(body["bridge_id"]) <= 128:
        return "bridge_id: must be a non-empty string"
    if not isinstance(body["batch_id"], str) or not body["batch_id"]:
        return "batch_id: must be a non-empty string"
    if not idempotency_key:
        return "Idempotency-Key header is required (the batch_id)"
    if idempotency_key != body["batch_id"]:
        return "Idempotency-Key must equal the body's batch_id"
    if problem := utc_problem("sent_at", body["sent_at"]):
        return problem
    if not isinstance(body["records"], list) or not body["records"]:
        return "records: must be a non-empty array"
    # A record without a string id cannot be named in "rejected": the bridge must split to find it.
    if any(not isinstance(r, dict) or not isinstance(r.get("id"), str) for r in body["records"]):
        return "records: every record needs a string id"
    return None


def heartbeat_problem(b: Any) -> str | None:
    """Why a heartbeat body breaks the contract, or None."""
    if not isinstance(b, dict):
        return "heartbeat: must be a JSON object"
    unknown = sorted(
        set(b) - set(HEARTBEAT_FIELDS) - set(HEARTBEAT_OPTIONAL) - set(HEARTBEAT_ADOPTION)
    )
    missing = [k for k in HEARTBEAT_FIELDS if k not in b]
    if unknown or missing:
        return f"heartbeat: unknown key(s) {', '.join(unknown) or '-'}; missing key(s) {', '.join(missing) or '-'}"
    for name in HEARTBEAT_OPTIONAL:
        if name in b and not isinstance(b[name], str):
            return f"{name}: must be a string"
    if b["schema"] != HEARTBEAT_SCHEMA:
        return f'schema: must be "{HEARTBEAT_SCHEMA}"'
    if problem := _adoption_problem(b):
        return problem
    for name in ("bridge_id", "version"):
        if not isinstance(b[name], str):
            return f"{name}: must be a string"
    if problem := utc_problem("sent_at", b["sent_at"]):
        return problem
    if not _number(b["uptime_s"]) or b["uptime_s"] < 0:
        return "uptime_s: must be a number >= 0"
    if b["state"] not in BRIDGE_STATES:
        return f"state: must be one of {', '.join(BRIDGE_STATES)}"
    outbox = b["outbox"]
    keys = ("pending", "oldest_pending_age_s", "dead_letter", "dropped")
    if not isinstance(outbox, dict) or not all(
        _number(outbox.get(k)) and outbox[k] >= 0 for k in keys
    ):
        return "outbox: must hold pending, oldest_pending_age_s, dead_letter and dropped as numbers >= 0"
    sensors = b["sensors"]
    if not isinstance(sensors, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("id"), str)
        and s.get("state") in ("ok", "failing", "unknown")
        and all(s.get(k) is None or isinstance(s[k], str) for k in ("last_success", "last_error"))
        for s in sensors
    ):
        return 'sensors: must be a list of {"id": string, "state": "ok|failing|unknown", "last_success", "last_error"}'
    host = b["host"]
    keys = ("disk_free_mb", "mem_used_pct", "cpu_temp_c", "load1")
    if not isinstance(host, dict) or not all(
        k in host and (host[k] is None or _number(host[k])) for k in keys
    ):
        return "host: must hold disk_free_mb, mem_used_pct, cpu_temp_c and load1 as numbers or null"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)  # already checked to be UTC with Z


def _adoption_problem(b: dict[str, Any]) -> str | None:
    """Why an adopted bridge's ``config_source`` / ``config`` keys break the contract, or None."""
    if "config_source" in b and b["config_source"] not in ("cloud", "local"):
        return 'config_source: must be "cloud" or "local"'
    if "config" not in b:
        return None
    c = b["config"]
    if not isinstance(c, dict) or c.get("status") not in CONFIG_STATUSES:
        return f"config: must be an object whose status is one of {', '.join(CONFIG_STATUSES)}"
    for name in ("version", "running"):
        if c.get(name) is not None and not _count(c[name]):
            return f"config.{name}: must be an integer >= 0 or null"
    error = c.get("error")
    if error is not None and (not isinstance(error, str) or len(error) > 500):
        return "config.error: must be a string of at most 500 characters"
    return None
