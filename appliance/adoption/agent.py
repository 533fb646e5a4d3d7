"""``sensor-bridge fleet``: the bridge adopts itself into a fleet and runs the config the cloud sends.

One step a second, as a small state machine whose memory is on disk
(state.py), so a restart picks up where it was:

1. the config holds ``[fleet]`` alone: make the credential and claim code
   (identity.py), show the code (claim file, status file, /health, the LED's
   ``unclaimed`` pattern), and ``POST /enroll`` until claimed, waiting what the
   cloud asks (``retry_after_s``), growing by a quarter each time, to 300 s;
2. claimed: every ``fleet.check_s`` ``GET /config`` with ``If-None-Match``,
   and at once when the heartbeat's answer names a newer ``config_version``
   (the collector writes it to ``fleet/wanted-version``). Polling stays:
   before its first config the bridge runs no collector, so no heartbeat,
   and a 304 a minute costs the cloud nothing; it also re-fetches the whole
   document after an outage, so nothing sent meanwhile is missed;
3. a newer version for this bridge, valid by ``config check``'s rules, is
   written (apply.py) and the services restarted; then the health gate: within
   ``fleet.gate_s`` every sensor polled, or the last good config goes back by
   itself and the version is reported ``rolled_back`` with the first error;
4. a config file this agent did not write (a card's, imported at boot) is
   the store's own: ``config_source: local``, and nothing is fetched;
5. a scan of the store's network the fleet page asked for (named by the
   config answer's ``X-Scan-Wanted`` or the heartbeat answer's
   ``scan_wanted``) is run and reported by scan_job.py, beside all this.

The cloud unreachable changes nothing: the last good config keeps running.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config, ConfigError, PathsConfig, load_config, parse_listen
from ..fleet import wanted_scan, wanted_version
from ..service import Service
from ..status import write_status
from . import apply
from .cloud import Cloud
from .identity import (
    CREDENTIAL,
    Identity,
    hardware_serial,
    lan_address,
    machine_id,
    macs,
    normalised_code,
    remove_claim_file,
    sha256_hex,
    write_claim_file,
)
from .scan_job import ScanJob
from .state import FleetState

log = logging.getLogger("sensor-bridge.fleet")

ENROLL_SCHEMA = "sensor-bridge/enroll/v1"
CONFIG_SCHEMA = "sensor-bridge/config/v1"
MAX_ENROLL_WAIT_S = 300.0
UNREACHABLE_WAIT_S = 30.0


class FleetAgent(Service):
    """Enrolls, waits to be claimed, fetches and applies the cloud's config, gates it."""

    step_every_s = 1.0

    def __init__(
        self, config_path: str | Path, boot: Path | None, stop_event: threading.Event | None = None
    ) -> None:
        super().__init__(stop_event)
        self.path = Path(config_path)
        self.boot = boot
        self.config: Config | None = None
        self.problem = ""
        self.identity: Identity | None = None
        self.state = FleetState()
        self.next_enroll = 0.0
        self.enroll_wait: float | None = None
        self.next_check = 0.0
        self.asked_for: int | None = None
        self.cloud: Cloud | None = None
        self.last_error = ""
        self.health_server: Any = None
        self.scans = ScanJob()
        self.scan_named: int | None = None  # by the last config answer's X-Scan-Wanted

    # ------------------------------------------------------------ one step

    def start(self) -> None:
        self._read_config()

    def _read_config(self) -> bool:
        try:
            self.config = load_config(self.path)
            self.problem = ""
        except ConfigError as exc:
            self.config, self.problem = None, "; ".join(exc.problems)
        return self.config is not None

    def step(self) -> float | None:
        if not self._read_config():
            self._forget_a_lost_claim()
            return 5.0
        fleet = self.config.fleet
        state_dir = self.config.paths.state_dir
        self.state = FleetState.load(state_dir)
        if fleet is None:
            self.problem = "no [fleet] table: this bridge is configured by hand"
            if self.state.bridge_id and self.state.source != "local":
                self.state.source = "local"  # a card's file without [fleet] took over
                self.state.save(state_dir)
            return 30.0
        if self.identity is None:
            self._take_identity(Path(state_dir) / "fleet")
        if self._local_file():
            if self.state.source != "local":
                log.info("%s was not written by the fleet agent: the card's config wins", self.path)
                self.state.source = "local"
                self.state.save(state_dir)
            self._serve_health(False)
            return fleet.check_s
        self._serve_health(self.config.waiting_for_the_cloud)
        if self.state.bridge_id is None:
            if time.monotonic() >= self.next_enroll:
                self._enroll()
            return None
        self._offer_scan()
        if self.state.status == "pending" and self.state.gate_until is not None:
            self._gate()
            return None
        if time.monotonic() >= self.next_check or self._newer_wanted():
            self.next_check = time.monotonic() + fleet.check_s
            self._check_config()
        return None

    def _forget_a_lost_claim(self) -> None:
        """The cloud's config names a credential that is gone (the state folder was wiped): that
        claim is lost, so the bridge goes back to [fleet] alone and enrolls anew, as a re-flash."""
        paths = apply.local_tables(self.path).get("paths") or {}
        state_dir = paths.get("state_dir") or PathsConfig().state_dir
        credential = Path(str(state_dir)) / "fleet" / CREDENTIAL
        if credential.exists() or not apply.made_with(self.path, credential):
            return
        log.warning("%s is gone: back to [fleet] alone, enrolling anew", credential)
        apply.install(self.path, apply.fleet_only(self.path))
        if problem := apply.restart_services():
            log.error("%s", problem)

    def _take_identity(self, fleet_dir: Path) -> None:
        self.identity = Identity.load_or_make(fleet_dir)
        if self.identity.made_now:
            # A new credential (first boot, or a re-flashed card): a new enrollment to claim.
            log.info("made this bridge's credential and claim code %s", self.identity.claim_code)
            self.state = FleetState()
            self.state.save(self.config.paths.state_dir)  # type: ignore[union-attr]

    def _cloud(self, url: str) -> Cloud:
        """One client (one connection pool) for as long as the fleet url stays the same."""
        if self.cloud is None or self.cloud.url != url.rstrip("/"):
            if self.cloud is not None:
                self.cloud.close()
            self.cloud = Cloud(url)
        return self.cloud

    def _newer_wanted(self) -> bool:
        """The heartbeat answer named a version newer than the one running, not one refused."""
        assert self.config is not None
        wanted = wanted_version(self.config.paths.state_dir)
        if wanted is None or wanted in self.state.refused or wanted == self.asked_for:
            return False
        self.asked_for = wanted  # once per version: a 304 must not make it ask every second
        return self.state.running is None or wanted > self.state.running

    def _offer_scan(self) -> None:
        """Start (or resend) the scan the cloud names; scan_job.py keeps it to one at a time."""
        assert self.config is not None and self.config.fleet is not None and self.identity
        wanted = self.scan_named or wanted_scan(self.config.paths.state_dir)
        self.scans.offer(
            wanted, self.config.fleet.url, self.identity.credential, self.state.bridge_id or ""
        )

    def _local_file(self) -> bool:
        """Whether the config file is the store's own: a full config this agent did not write."""
        assert self.config is not None
        if self.config.waiting_for_the_cloud:
            return False
        try:
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return False
        return digest != self.state.written_sha256

    # ------------------------------------------------------------ enrolling

    def _enroll(self) -> None:
        assert self.config is not None and self.config.fleet is not None and self.identity
        fleet, identity = self.config.fleet, self.identity
        write_claim_file(self.boot, identity.claim_code, fleet.url.rstrip("/"))
        body = {
            "schema": ENROLL_SCHEMA,
            "serial": hardware_serial(),
            "machine_id": machine_id(),
            "macs": macs(),
            "version": __version__,
            "lan_address": lan_address(fleet.url),
            "hostname": _hostname(),
            "credential_sha256": sha256_hex(identity.credential),
            "claim_code_sha256": sha256_hex(normalised_code(identity.claim_code)),
        }
        answer = self._cloud(fleet.url).enroll(fleet.enroll_token, body)
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("bridge_id"):
            self.state.bridge_id = str(answer.body["bridge_id"])
            self.state.label = answer.body.get("label")
            self.state.timezone = answer.body.get("timezone")
            self.state.source = "cloud"
            self.state.save(self.config.paths.state_dir)
            remove_claim_file(self.boot)
            self.last_error = ""
            log.info("claimed as %s; asking for its config", self.state.bridge_id)
            self.next_check = 0.0
            self.report_due = True
            return
        if answer.status == 202:
            asked = (
                (answer.body or {}).get("retry_after_s") if isinstance(answer.body, dict) else None
            )
            base = float(asked) if isinstance(asked, int | float) and asked > 0 else 30.0
            self.enroll_wait = min(MAX_ENROLL_WAIT_S, max(base, (self.enroll_wait or base) * 1.25))
            self.last_error = ""
        else:
            self.last_error = f"enroll: {answer.error}"
            retry = _retry_after(answer.headers)
            self.enroll_wait = retry or min(
                MAX_ENROLL_WAIT_S, (self.enroll_wait or UNREACHABLE_WAIT_S / 2) * 2
            )
            log.warning("%s; trying again in %.0f s", self.last_error, self.enroll_wait)
        self.next_enroll = time.monotonic() + self.enroll_wait * random.uniform(0.9, 1.1)

    # ------------------------------------------------------------ the config

    def _check_config(self) -> None:
        assert self.config is not None and self.config.fleet is not None and self.identity
        state = self.state
        answer = self._cloud(self.config.fleet.url).config(
            self.identity.credential, state.bridge_id or "", state.running
        )
        if answer.status is not None:
            self.scan_named = _scan_id(answer.headers)
        if answer.status in (304, 404):
            self.last_error = ""
            return
        if answer.status != 200:
            # Unreachable or refused: the last good config keeps running.
            self.last_error = f"config: {answer.error}"
            log.warning("%s; the running config stays", self.last_error)
            return
        self.last_error = ""
        doc = answer.body if isinstance(answer.body, dict) else {}
        version = doc.get("version")
        if doc.get("schema") != CONFIG_SCHEMA or not isinstance(version, int):
            self.last_error = "config: the answer is not a sensor-bridge/config/v1 document"
            return
        if doc.get("bridge_id") != state.bridge_id:
            self.last_error = (
                f"config: version {version} is for {doc.get('bridge_id')!r}, not this bridge"
            )
            return
        if version in state.refused or (state.running is not None and version <= state.running):
            return
        self._apply(version, doc.get("config"))

    def _apply(self, version: int, document: Any) -> None:
        assert self.config is not None and self.config.fleet is not None and self.identity
        state, state_dir = self.state, self.config.paths.state_dir
        try:
            composed = apply.compose(
                document,
                apply.local_tables(self.path),
                state.bridge_id or "",
                self.config.fleet.url,
                self.identity.credential_path,
            )
            text, new = apply.checked_text(composed, self.path)
        except ConfigError as exc:
            error = "; ".join(exc.problems)
            log.error("config version %d is invalid, nothing applied: %s", version, error)
            state.report(version, "invalid", error)
            state.save(state_dir)
            return
        old_pid = apply.collector_pid(self.config)
        self._serve_health(False)  # the collector serves /health from now on
        apply.install(self.path, text)
        state.written_sha256 = hashlib.sha256(text.encode()).hexdigest()
        state.source = "cloud"
        state.report(version, "pending")
        state.gate_until = time.time() + self.config.fleet.gate_s
        state.gate_after_pid = old_pid
        state.save(state_dir)
        log.info("config version %d written; restarting the services", version)
        if problem := apply.restart_services():
            log.error("%s", problem)
        self.config = new

    def _gate(self) -> None:
        assert self.config is not None
        state, state_dir = self.state, self.config.paths.state_dir
        assert self.config.fleet is not None
        since = (state.gate_until or 0) - self.config.fleet.gate_s
        passed, error = apply.gate_verdict(self.config, state.gate_after_pid, since)
        version = state.tried or 0
        if passed:
            state.report(version, "applied")
            state.gate_until = None
            state.save(state_dir)
            log.info("config version %d applied: every sensor polled", version)
            self.report_due = True
            return
        if time.time() < (state.gate_until or 0):
            return
        log.error("config version %d failed its health gate: %s; going back", version, error)
        apply.restore_last_good(self.path)
        try:
            state.written_sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            state.written_sha256 = None
        state.report(version, "rolled_back", error or "health gate not passed")
        state.gate_until = None
        state.save(state_dir)
        if problem := apply.restart_services():
            log.error("%s", problem)
        self.report_due = True

    # ------------------------------------------------------------ what it shows

    def facts(self) -> dict[str, Any]:
        """What status, /health and the LED learn from the agent (never the credential)."""
        s = self.state
        unclaimed = s.bridge_id is None and self.identity is not None and s.source != "local"
        return {
            "claim_code": self.identity.claim_code if unclaimed and self.identity else None,
            "claimed": s.bridge_id is not None,
            "bridge_id": s.bridge_id,
            "config_source": s.source,
            "config": {
                "version": s.tried,
                "status": s.status,
                "error": s.error,
                "running": s.running,
            },
            "fleet_url": self.config.fleet.url if self.config and self.config.fleet else None,
            "last_error": self.last_error or None,
            "scan_error": self.scans.last_error or None,
        }

    def report(self) -> str | None:
        if self.config is None:  # where its status file goes is in the file it cannot read
            return f"error: config {self.path}: {self.problem}"
        facts = self.facts()
        if facts["claim_code"]:
            reason = f"waiting to be claimed with code {facts['claim_code']}"
        elif facts["config_source"] == "local":
            reason = "the config file is the store's own (config_source local); nothing fetched"
        elif self.config.waiting_for_the_cloud:
            reason = f"claimed as {facts['bridge_id']}; waiting for its config from the cloud"
        else:
            reason = f"running config version {self.state.running} from the cloud"
        if self.last_error:
            reason += f" ({self.last_error})"
        state = "degraded" if self.last_error else "ok"
        write_status(self.config.paths.run_dir, "fleet", state, reason=reason, **facts)
        return reason

    def _serve_health(self, wanted: bool) -> None:
        """While only [fleet] is there no collector runs: the agent answers /health instead."""
        if not wanted or self.config is None or not self.config.health.listen:
            if self.health_server:
                self.health_server.shutdown()
                self.health_server.server_close()
                self.health_server = None
            return
        if self.health_server:
            return
        from ..http_server import BoundedHandler, serve

        agent = self

        class Handler(BoundedHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/health":
                    self.send_json(404, {"error": "only /health lives here"})
                    return
                facts = agent.facts()
                status = "unclaimed" if facts["claim_code"] else "starting"
                self.send_json(200, {"status": status, "version": __version__, **facts})

        try:
            self.health_server = serve(parse_listen(self.config.health.listen), Handler, "health")
        except OSError as exc:
            log.warning("cannot serve /health on %s: %s", self.config.health.listen, exc.strerror)

    def shutdown(self) -> None:
        self._serve_health(False)
        self.scans.wait(30.0)  # a report under way is sent before the service stops
        if self.cloud is not None:
            self.cloud.close()


def _retry_after(headers: Any) -> float | None:
    try:
        return max(1.0, float((headers or {}).get("Retry-After")))
    except (TypeError, ValueError):
        return None


def _scan_id(headers: Any) -> int | None:
    text = str((headers or {}).get("X-Scan-Wanted") or "").strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


def _hostname() -> str:
    import socket

    return socket.gethostname()[:64] or "sensor-bridge"
