"""The bridge's overall state and its reason: one rule set for /health, the heartbeat, the LED and ``status``.

* no valid config: ``no-config``;
* ``[fleet]`` alone (appliance/adoption/): ``unclaimed`` while the bridge waits to
  be claimed, then ``starting`` until the cloud's config arrives;
* maintenance mode on: ``maintenance``, whatever else is true;
* otherwise the worst of: every enabled service's state as its status file
  says (a stale file, or a missing one once the start grace is over, is
  ``error``), a config the boot partition brought that was rejected
  (``error``: the old config still runs, the person's new one does not), and
  unacknowledged outbox damage (``error``, until ``outbox ack-corrupt``).

The reason names what decided the state, e.g. ``relay: broker unreachable``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .boot_config import rejected_boot_config
from .config import Config
from .maintenance import maintenance_active
from .outbox_damage import OutboxDamage
from .status import (
    MAINTENANCE,
    UNCLAIMED,
    ServiceState,
    counted_by_the_bridge,
    read_status,
    service_state,
    worst,
)

# A service that has not written its status file yet counts as starting for this long
# after the one asking started (the services start together at boot).
START_GRACE_S = 60.0


@dataclass(frozen=True)
class BridgeState:
    state: str
    reason: str
    services: dict[str, ServiceState] = field(default_factory=dict)


def counted_service(status: dict | None, now: float, in_grace: bool) -> ServiceState:
    """One service as the bridge's overall state counts it, from its status file (None: no file)."""
    seen = service_state(status, now, in_grace)
    counted = counted_by_the_bridge(seen.state)
    if counted == seen.state:
        return seen
    return ServiceState(counted, str((status or {}).get("reason") or counted), seen.written_at)


def bridge_state(
    config: Config | None,
    *,
    config_problem: str = "",
    own: tuple[str, str, str] | None = None,
    started: float | None = None,
    outbox_damage: str | None = None,
    now: float | None = None,
) -> BridgeState:
    """The bridge's state and reason.

    ``own`` is the asking service's (name, state, reason), fresher than its file;
    ``started`` (epoch seconds) is when the asker started, for the start grace
    (None: no grace, a missing file is an error at once); ``outbox_damage`` adds
    what the asker found wrong with the outbox to the damage notes on disk.
    """
    if config is None:
        return BridgeState("no-config", config_problem or "no valid config")
    now = time.time() if now is None else now
    in_grace = started is not None and now - started < START_GRACE_S
    services = {}
    for service in config.enabled_services():
        if own is not None and service == own[0]:
            services[service] = ServiceState(own[1], own[2], now)
        else:
            services[service] = counted_service(
                read_status(config.paths.run_dir, service), now, in_grace
            )
    active = maintenance_active(config)
    if active:
        return BridgeState(
            MAINTENANCE, f"maintenance on until {active['until']} by {active['by']}", services
        )
    if config.waiting_for_the_cloud:
        if waiting := _waiting_for_the_cloud(config, services):
            return waiting
    concerns = {name: (s.state, s.reason) for name, s in services.items()}
    rejected = rejected_boot_config()
    if rejected:
        concerns["config"] = ("error", f"the new config was rejected: see {rejected}")
    damage = outbox_damage or OutboxDamage(config.outbox_path).summary()
    if damage:
        concerns["outbox"] = ("error", damage)
    overall = worst([state for state, _ in concerns.values()])
    return BridgeState(overall, _reason(concerns, overall), services)


def _waiting_for_the_cloud(config: Config, services: dict[str, ServiceState]) -> BridgeState | None:
    """[fleet] alone: ``unclaimed`` with the claim code, or ``starting`` until the config comes.

    None when the fleet agent is not running: then its state (error) decides, as any service's."""
    fleet = read_status(config.paths.run_dir, "fleet")
    if services.get("fleet") is None or services["fleet"].state == "error" or not fleet:
        return None
    if fleet.get("claim_code"):
        code = fleet["claim_code"]
        return BridgeState(UNCLAIMED, f"waiting to be claimed with code {code}", services)
    return BridgeState("starting", str(fleet.get("reason") or "waiting for its config"), services)


def _reason(concerns: dict[str, tuple[str, str]], overall: str) -> str:
    """``who: why`` for everything at the overall state; one why shared by several is said once."""
    by_why: dict[str, list[str]] = {}
    for name, (state, why) in concerns.items():
        if state == overall:
            by_why.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_why.items())
