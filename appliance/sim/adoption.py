"""The reference receiver's adoption side: enroll tokens, enrollments, claims, config versions.

What the cloud does for a bridge that adopts itself (docs/ingest-contract.md,
"Adoption"), kept in memory: ``POST /enroll`` records a bridge that holds a
fleet enroll token (202 until claimed, 200 with its id after), a test claims it
with :meth:`Adoption.claim` (the fleet page's form), sets its config with
:meth:`Adoption.set_config`, and the bridge reads it with ``GET /config``
(its own credential, ``If-None-Match``). A version the bridge reports as
``rolled_back`` or ``invalid`` in a heartbeat is never offered again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .http_handler import Reply

ENROLL_SCHEMA = "sensor-bridge/enroll/v1"
CONFIG_SCHEMA = "sensor-bridge/config/v1"
ENROLL_FIELDS = (
    "schema",
    "serial",
    "machine_id",
    "macs",
    "version",
    "lan_address",
    "hostname",
    "credential_sha256",
    "claim_code_sha256",
)
CLAIM_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_BRIDGE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENROLLS_PER_MINUTE = 30  # per token and per source address
WRONG_CODES_LOCK = 5  # wrong claim codes within LOCK_S lock claiming for LOCK_S
LOCK_S = 15 * 60
REFUSED = ("rolled_back", "invalid")


class ClaimRefused(Exception):
    """A claim the fleet page would refuse: a wrong or used code, or claiming locked."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalised_code(code: str) -> str:
    """A claim code as hashed: uppercase, without its dash and spaces."""
    return code.upper().replace("-", "").replace(" ", "")


@dataclass
class Enrollment:
    """One bridge that enrolled: what it said about itself, and who claimed it."""

    id: str
    body: dict[str, Any]
    source: str
    last_seen: float
    bridge_id: str | None = None
    reflashed_from: str | None = None


@dataclass
class Bridge:
    id: str
    label: str
    timezone: str
    credential_sha256: str
    serial: str
    configs: list[dict[str, Any]] = field(default_factory=list)  # index = version - 1
    refused: set[int] = field(default_factory=set)


def _enroll_problem(b: Any) -> str | None:
    """Why an enroll body breaks the contract (it names the key), or None."""
    if not isinstance(b, dict):
        return "body must be a JSON object"
    unknown = sorted(set(b) - set(ENROLL_FIELDS))
    missing = [k for k in ENROLL_FIELDS if k not in b]
    if unknown or missing:
        return f"enroll: unknown key(s) {', '.join(unknown) or '-'}; missing key(s) {', '.join(missing) or '-'}"
    if b["schema"] != ENROLL_SCHEMA:
        return f'schema: must be "{ENROLL_SCHEMA}"'
    for name, most in (("serial", 64), ("hostname", 64), ("machine_id", 64), ("version", 64)):
        if not isinstance(b[name], str) or not 1 <= len(b[name]) <= most:
            return f"{name}: must be a non-empty string of at most {most} characters"
    if not isinstance(b["lan_address"], str) or len(b["lan_address"]) > 64:
        return "lan_address: must be a string of at most 64 characters"
    macs = b["macs"]
    if (
        not isinstance(macs, list)
        or len(macs) > 8
        or not all(isinstance(m, str) and _MAC.fullmatch(m) for m in macs)
    ):
        return "macs: must be a list of at most 8 addresses like dc:a6:32:01:02:03"
    for name in ("credential_sha256", "claim_code_sha256"):
        if not isinstance(b[name], str) or not _HEX64.fullmatch(b[name]):
            return f"{name}: must be 64 lowercase hex characters"
    return None


class Adoption:
    """Enroll tokens, enrollments, claimed bridges and their config versions, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: dict[str, dict[str, Any]] = {}  # sha256 -> {"label", "revoked"}
        self.enrollments: dict[str, Enrollment] = {}  # by credential_sha256
        self.bridges: dict[str, Bridge] = {}
        self.retry_after_s = 30  # what a 202 tells the bridge; tests shorten it
        self._hits: dict[str, deque[float]] = {}
        self._wrong_codes: deque[float] = deque()
        self._locked_until = 0.0

    # ------------------------------------------------------------ the fleet's side (Python API)

    def new_enroll_token(self, label: str = "") -> str:
        """A fleet enroll token (``sbe_`` + 43 characters); only its hash is kept."""
        token = "sbe_" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[sha256_hex(token)] = {"label": label, "revoked": False}
        return token

    def revoke_enroll_token(self, token: str) -> None:
        with self.lock:
            self.tokens[sha256_hex(token)]["revoked"] = True

    def claim(
        self, code: str, label: str = "", timezone: str = "UTC", id: str | None = None
    ) -> str:
        """Claim the enrolled bridge showing ``code``; returns its new bridge id (ClaimRefused if not)."""
        now = time.time()
        with self.lock:
            if now < self._locked_until:
                raise ClaimRefused(f"claiming is locked until {time.ctime(self._locked_until)}")
            wanted = sha256_hex(normalised_code(code))
            found = next(
                (
                    e
                    for e in self.enrollments.values()
                    if e.body["claim_code_sha256"] == wanted and e.bridge_id is None
                ),
                None,
            )
            if found is None:
                self._wrong_codes.append(now)
                while self._wrong_codes and self._wrong_codes[0] < now - LOCK_S:
                    self._wrong_codes.popleft()
                if len(self._wrong_codes) >= WRONG_CODES_LOCK:
                    self._locked_until = now + LOCK_S
                raise ClaimRefused(f"no unclaimed bridge shows the code {code!r}")
            bridge_id = self._unique_id(id or _slug(label) or f"bridge-{found.id}")
            found.bridge_id = bridge_id
            self.bridges[bridge_id] = Bridge(
                bridge_id,
                label or bridge_id,
                timezone,
                found.body["credential_sha256"],
                found.body["serial"],
            )
        return bridge_id

    def set_config(self, bridge_id: str, document: dict[str, Any]) -> int:
        """A new config version for ``bridge_id`` (the store's part, as JSON); returns its number."""
        with self.lock:
            bridge = self.bridges[bridge_id]
            bridge.configs.append(dict(document))
            return len(bridge.configs)

    def wanted_version(self, bridge_id: str) -> int | None:
        """The newest version the bridge has not refused (the heartbeat answer's config_version)."""
        with self.lock:
            bridge = self.bridges.get(bridge_id)
            if bridge is None:
                return None
            return next(
                (v for v in range(len(bridge.configs), 0, -1) if v not in bridge.refused), None
            )

    def bridge_of_key(self, key: str) -> str | None:
        """The claimed bridge whose credential ``key`` is, or None."""
        digest = sha256_hex(key)
        with self.lock:
            return next(
                (b.id for b in self.bridges.values() if b.credential_sha256 == digest), None
            )

    def note_heartbeat(self, body: dict[str, Any]) -> None:
        """Remember the versions an adopted bridge refused: they are never offered again."""
        report = body.get("config")
        if not isinstance(report, dict) or report.get("status") not in REFUSED:
            return
        with self.lock:
            bridge = self.bridges.get(body.get("bridge_id", ""))
            if bridge is not None and isinstance(report.get("version"), int):
                bridge.refused.add(report["version"])

    # ------------------------------------------------------------ the routes

    def enroll(self, headers: Any, body: Any, source: str) -> Reply:
        """POST /enroll: 202 while unclaimed, 200 with the bridge's id once claimed."""
        scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
        digest = sha256_hex(token.strip())
        with self.lock:
            known = self.tokens.get(digest)
            if scheme.lower() != "bearer" or known is None or known["revoked"]:
                return Reply(401, {"error": "missing, unknown or revoked enroll token"})
            if not (self._allowed("token:" + digest) and self._allowed("from:" + source)):
                return Reply(429, {"error": "too many enrollments; wait"}, {"Retry-After": "60"})
        if problem := _enroll_problem(body):
            return Reply(400, {"error": problem})
        with self.lock:
            known_enrollment = self.enrollments.get(body["credential_sha256"])
            if known_enrollment is None:
                known_enrollment = Enrollment(
                    secrets.token_hex(4), body, source, time.time(), None, self._earlier(body)
                )
                self.enrollments[body["credential_sha256"]] = known_enrollment
            known_enrollment.last_seen = time.time()
            known_enrollment.source = source
            # Its claim code stays the one first shown: the same credential is the same bridge.
            code = known_enrollment.body["claim_code_sha256"]
            known_enrollment.body = {**body, "claim_code_sha256": code}
            if known_enrollment.bridge_id is None:
                return Reply(202, {"state": "unclaimed", "retry_after_s": self.retry_after_s})
            bridge = self.bridges[known_enrollment.bridge_id]
        return Reply(
            200,
            {
                "state": "claimed",
                "bridge_id": bridge.id,
                "timezone": bridge.timezone,
                "label": bridge.label,
            },
        )

    def config_for(self, headers: Any) -> Reply:
        """GET /config: the newest version the bridge has not refused; 304 when it holds it."""
        scheme, _, key = headers.get("Authorization", "").strip().partition(" ")
        bridge_id = self.bridge_of_key(key.strip()) if scheme.lower() == "bearer" else None
        if bridge_id is None or headers.get("X-Bridge-Id") != bridge_id:
            return Reply(401, {"error": "missing or wrong bridge id or key"})
        version = self.wanted_version(bridge_id)
        if version is None:
            return Reply(404, {"error": "no config yet"})
        etag = f'"{version}"'
        if headers.get("If-None-Match", "").strip() == etag:
            return Reply(304, None, {"ETag": etag})
        with self.lock:
            document = self.bridges[bridge_id].configs[version - 1]
        return Reply(
            200,
            {
                "schema": CONFIG_SCHEMA,
                "bridge_id": bridge_id,
                "version": version,
                "made_by": "sim receiver",
                "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": document,
            },
            {"ETag": etag},
        )

    # ------------------------------------------------------------ inside

    def _allowed(self, who: str) -> bool:
        now = time.monotonic()
        hits = self._hits.setdefault(who, deque())
        while hits and hits[0] < now - 60:
            hits.popleft()
        if len(hits) >= ENROLLS_PER_MINUTE:
            return False
        hits.append(now)
        return True

    def _earlier(self, body: dict[str, Any]) -> str | None:
        """The bridge (or enrollment) the same serial belonged to before: a re-flashed card."""
        for e in self.enrollments.values():
            if e.body["serial"] == body["serial"]:
                return e.bridge_id or e.id
        return None

    def _unique_id(self, wanted: str) -> str:
        if not _BRIDGE_ID.fullmatch(wanted):
            raise ClaimRefused(f"bridge id {wanted!r}: 1 to 64 letters, digits, '.', '_' or '-'")
        made, n = wanted, 1
        while made in self.bridges:
            n += 1
            made = f"{wanted}-{n}"
        return made


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:64]
