"""Maintenance over SSH: ``status``, ``doctor``, ``sensors test ID`` and ``outbox ...``.

``status`` is the one screen a person reads first. ``doctor`` walks the seed's
troubleshooting list by itself (sensors reachable, credentials, a sample read,
the cloud API and its key, disk, clock, services, recent errors) and prints a
PASS/WARN/FAIL line for each, with the fix next to every failure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import dead_letters
from .bridge_state import bridge_state
from .clock import clock_synchronised
from .config import Config, config_from_args, mask_urls
from .config_keys import shown_safely
from .fleet import fleet_facts
from .outbox import Outbox, OutboxDamage
from .remote import handshake
from .status import (
    STALE_AFTER_S,
    age_s,
    doctor_passes,
    effective_state,
    read_status,
    status_succeeds,
)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# ---------------------------------------------------------------- status

DEAD_SCANNED = 5000  # newest dead letters read for "not understood today"
PARTLY_DECODED = "lorawan frame partly decoded"  # the event sources/lorawan/readings.py names


def gather_status(config: Config) -> dict[str, Any]:
    """What ``status`` shows: the bridge's state (bridge_state's rules), the services' files,
    the outbox read directly."""
    now = time.time()
    collector = read_status(config.paths.run_dir, "collector") or {}
    outbox = Outbox.of(config, readonly=True)
    try:
        stats = outbox.stats(now).__dict__
        damage = outbox.reset_reason or outbox.damage
        not_understood = dead_letters.not_understood_today(
            outbox.dead_letters(DEAD_SCANNED), config.mqtt.devices if config.mqtt else [], now
        ) + dead_letters.partly_decoded_today(
            outbox.events_since(PARTLY_DECODED, dead_letters.local_midnight(now), DEAD_SCANNED)
        )
    finally:
        outbox.close()
    bridge = bridge_state(
        config, started=_collector_started(collector), outbox_damage=damage, now=now
    )
    services = {
        name: {
            "state": s.state,
            "reason": s.reason,
            "written_s_ago": None if s.written_at is None else round(now - s.written_at),
        }
        for name, s in bridge.services.items()
    }
    return {
        "bridge_id": config.bridge.id,
        "state": bridge.state,
        "reason": bridge.reason,
        "outbox_damage": damage,
        "services": services,
        "sensors": collector.get("sensors")
        or [
            {"id": s.id, "state": "unknown", "last_success": None, "last_error": None}
            for s in config.sensors
        ],
        "outbox": stats,
        "uplink": collector.get("uplink", {}),
        "last_collection": collector.get("last_collection"),
        "time_synced": collector.get("time_synced"),
        "not_understood": not_understood,
        **fleet_facts(),  # the WireGuard public key and the last update, when there are
        **({"tunnel": handshake()} if config.remote else {}),
        **({"fleet": _fleet(config)} if config.fleet else {}),
        **({"waiting_for_the_cloud": True} if config.waiting_for_the_cloud else {}),
    }


def _fleet(config: Config) -> dict[str, Any]:
    """The fleet agent's facts (appliance/adoption/): the claim code while unclaimed, the config."""
    keys = ("claim_code", "bridge_id", "config_source", "config", "fleet_url", "last_error")
    fleet = read_status(config.paths.run_dir, "fleet") or {}
    return {k: fleet.get(k) for k in keys}


def _collector_started(collector: dict[str, Any]) -> float | None:
    """When the collector started: the start grace runs from there, as it does for /health."""
    written, uptime = collector.get("written_at"), collector.get("uptime_s")
    if isinstance(written, int | float) and isinstance(uptime, int | float):
        return float(written) - float(uptime)
    return None


def print_status(report: dict[str, Any]) -> None:
    print(f"sensor-bridge {report['bridge_id']}: {report['state'].upper()}")
    if report["state"] != "ok" and report.get("reason"):
        print(f"  {report['reason']}")
    print("\nservices")
    for name, s in report["services"].items():
        seen = f"(written {s['written_s_ago']}s ago)" if s["written_s_ago"] is not None else ""
        print(f"  {name:<10} {s['state']:<11} {s['reason']} {seen}".rstrip())
    print("\nsensors")
    if not report["sensors"] and report.get("waiting_for_the_cloud"):
        print("  none yet: the cloud sends them once the bridge is claimed")
    elif not report["sensors"]:
        print("  none polled (this bridge only relays what devices push)")
    for s in report["sensors"]:
        line = f"  {s['id']:<16} {s['state']:<8} last success {s.get('last_success') or 'never'}"
        if s["state"] == "failing":
            line += f"\n  {'':<16} last error: {s.get('last_error')}"
        if s.get("note"):
            line += f"\n  {'':<16} {s['note']}"
        print(line)
    o = report["outbox"]
    print("\noutbox")
    print(
        f"  pending {o['pending']} (oldest {_ago(o['oldest_pending_age_s']) if o['pending'] else '-'}),"
        f" dead-letter {o['dead_letter']}, dropped {o['dropped']}, {o['size_mb']} MB"
    )
    if report.get("outbox_damage"):
        print(f"  DAMAGE: {report['outbox_damage']}")
    for line in report.get("not_understood") or []:
        print(f"  {line}")
    u = report["uplink"]
    print("\nuplink")
    print(f"  state {u.get('state', 'unknown')}, last success {u.get('last_success') or 'never'}")
    if u.get("last_error"):
        print(f"  last error: {u['last_error']}")
    if report.get("wireguard_public_key"):
        print(
            f"\nremote: WireGuard public key {report['wireguard_public_key']} (sensor-bridge remote show)"
        )
    if report.get("tunnel"):
        print(f"tunnel: {report['tunnel']}")
    if report.get("last_update"):
        print(f"\nupdate: {report['last_update']}")
    if report.get("time_synced") is False:
        print("\nclock: NOT synchronised yet; polling waits for NTP")
    if fleet := report.get("fleet"):
        _print_fleet(fleet)


def _print_fleet(fleet: dict[str, Any]) -> None:
    print("\nfleet")
    if fleet.get("claim_code"):
        print(
            f"  claim code {fleet['claim_code']}: enter it on the fleet page ({fleet.get('fleet_url')})"
        )
    elif fleet.get("config_source") == "local":
        print(
            "  config from this bridge's own file (config_source local); the cloud's is not fetched"
        )
    elif fleet.get("bridge_id"):
        c = fleet.get("config") or {}
        print(
            f"  claimed as {fleet['bridge_id']}; config version running {c.get('running') or 'none yet'}, "
            f"last tried {c.get('version') or '-'} ({c.get('status') or '-'})"
        )
        if c.get("error"):
            print(f"  last error: {c['error']}")
    else:
        print("  fleet agent not running yet")
    if fleet.get("last_error"):
        print(f"  cloud: {fleet['last_error']}")


def _status(args: argparse.Namespace) -> int:
    report = gather_status(config_from_args(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    return 0 if status_succeeds(report["state"]) else 1


# ---------------------------------------------------------------- doctor


@dataclass
class Finding:
    verdict: str  # PASS | WARN | FAIL
    check: str
    detail: str
    fix: str = ""


def _tcp_reach(url: str, timeout: float) -> str | None:
    """None when host:port accepts a connection, else why not."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {parts.hostname}: {exc.strerror}"
    except TimeoutError:
        return f"{parts.hostname}:{port} did not answer within {timeout:g}s"
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or exc}"


def check_sensors(config: Config) -> list[Finding]:
    from .sources.base import SensorError, source_class

    found = []
    for sensor in config.sensors:
        source = source_class(sensor)
        address = source.address(sensor)
        why = address and _tcp_reach(address, min(getattr(sensor, "timeout_s", 5), 5))
        if why:
            found.append(
                Finding(
                    "FAIL",
                    f"sensor {sensor.id} reachable",
                    why,
                    "check the camera's power and cable, its IP in the config, and the VLAN",
                )
            )
            continue
        found.append(Finding("PASS", f"sensor {sensor.id} reachable", address or sensor.type))
        kinds = source.sample_kinds(sensor)
        kind = next((k for k in kinds if k not in source.snapshots), kinds[0])
        try:
            rows = source.sample(sensor, kind, hours=2)
        except SensorError as exc:
            fix = (
                "fix username/password (or auth) for this sensor in the config"
                if "401" in str(exc)
                else "open the camera's web page; restart it if it is unresponsive"
            )
            found.append(
                Finding("FAIL", f"sensor {sensor.id} credentials and sample read", str(exc), fix)
            )
            continue
        found.append(
            Finding(
                "PASS",
                f"sensor {sensor.id} credentials and sample read",
                f"{kind}: {len(rows)} period(s) in the last 2 hours",
            )
        )
    return found


def _probe_uplink(config: Config) -> Any:
    """POST a batch with no records: malformed by contract, so a receiver answers 400/422 once
    it has accepted the key and 401/403 when it has not. Nothing is stored either way."""
    import requests

    from . import __version__

    headers = {
        "Authorization": f"Bearer {config.uplink.api_key}",
        "User-Agent": f"sensor-bridge/{__version__}",
        "Content-Type": "application/json",
    }
    probe = {
        "schema": "sensor-bridge/ingest/v1",
        "bridge_id": config.bridge.id,
        "batch_id": "doctor-probe",
        "sent_at": "1970-01-01T00:00:00Z",
        "records": [],
    }
    return requests.post(
        config.uplink.url,
        json=probe,
        headers=headers,
        timeout=config.uplink.timeout_s,
        verify=config.uplink.verify_tls,
    )


def check_uplink(config: Config) -> list[Finding]:
    """Reach the API and prove the key, without storing anything in the cloud."""
    import requests

    reach, url = "cloud API reachable", config.uplink.url
    why = _tcp_reach(url, min(config.uplink.timeout_s, 5))
    if why:
        fix = "check the store's internet connection, DNS and firewall; readings wait in the outbox"
        return [Finding("FAIL", reach, why, fix)]
    try:
        code = _probe_uplink(config).status_code
    except requests.RequestException as exc:
        return [
            Finding(
                "FAIL", reach, type(exc).__name__, "check TLS (verify_tls), proxies and the URL"
            )
        ]
    if code in (401, 403):
        fix = "put the bridge's key from the cloud app into [uplink] api_key"
        return [
            Finding("PASS", reach, url),
            Finding("FAIL", "cloud API key accepted", f"HTTP {code}", fix),
        ]
    if code >= 500 or code == 404:
        fix = "check the URL path and the cloud app's status; readings wait in the outbox"
        return [Finding("FAIL", reach, f"HTTP {code} from {url}", fix)]
    return [
        Finding("PASS", reach, url),
        Finding(
            "PASS",
            "cloud API key accepted",
            # the probe is an empty batch: once past the key, the cloud refuses it as malformed
            "the cloud let the key in (and refused the empty probe batch, as it should)"
            if code in (400, 422)
            else f"the cloud let the key in (HTTP {code})",
        ),
    ]


def check_heartbeats(config: Config) -> list[Finding]:
    """Without heartbeats the fleet page calls a delivering bridge "never heard from" and alerts say silent."""
    if config.uplink.heartbeat_url:
        return [Finding("PASS", "heartbeats on", config.uplink.heartbeat_url)]
    return [
        Finding(
            "WARN",
            "heartbeats on",
            "off: the fleet page shows this bridge as never heard from, and alerts call it silent",
            'set [uplink] heartbeat_url = "https://<app>/api/bridge/v1/heartbeat" (docs/config.md)',
        )
    ]


def check_host(config: Config) -> list[Finding]:
    found = []
    try:
        free_mb = shutil.disk_usage(config.paths.state_dir).free / 1e6
        verdict = (
            "PASS"
            if free_mb >= config.outbox.min_free_disk_mb * 2
            else ("WARN" if free_mb >= config.outbox.min_free_disk_mb else "FAIL")
        )
        found.append(
            Finding(
                verdict,
                "disk space",
                f"{free_mb:.0f} MB free for {config.paths.state_dir}",
                "" if verdict == "PASS" else "delete old logs (journalctl --vacuum-size=50M)",
            )
        )
    except OSError as exc:
        found.append(
            Finding(
                "FAIL",
                "disk space",
                f"{config.paths.state_dir}: {exc.strerror}",
                "create the state directory (provision.sh does)",
            )
        )
    if clock_synchronised():
        found.append(Finding("PASS", "clock synchronised", time.strftime("%Y-%m-%d %H:%M:%S %Z")))
    else:
        verdict = "FAIL" if config.bridge.require_time_sync else "WARN"
        found.append(
            Finding(
                verdict,
                "clock synchronised",
                "NTP has not set the clock",
                "allow NTP (UDP 123) out of the store network; check `timedatectl`",
            )
        )
    return found


def check_services(config: Config) -> list[Finding]:
    found = []
    for service in config.enabled_services():
        body = read_status(config.paths.run_dir, service)
        state = effective_state(body)
        if body is None:
            found.append(
                Finding(
                    "FAIL",
                    f"service {service}",
                    "not running (no status file)",
                    f"systemctl status {_unit(service)}",
                )
            )
        elif doctor_passes(state):
            found.append(Finding("PASS", f"service {service}", state))
        elif (age_s(body) or 0) > STALE_AFTER_S:  # the file went stale: what it says is old news
            found.append(
                Finding(
                    "FAIL",
                    f"service {service}",
                    f"not running: its status was last written {_ago(age_s(body))}"
                    f" (then: {body.get('state')}, {body.get('reason', '')})",
                    f"systemctl status {_unit(service)}; journalctl -u {_unit(service)} -n 50",
                )
            )
        else:
            found.append(
                Finding(
                    "WARN" if state == "degraded" else "FAIL",
                    f"service {service}",
                    f"{state}: {body.get('reason', 'status file stale')}",
                    f"journalctl -u {_unit(service)} -n 50",
                )
            )
    return found


def check_outbox(config: Config) -> list[Finding]:
    outbox = Outbox.of(config, readonly=True)
    try:
        s = outbox.stats()
        found = []
        damage = outbox.reset_reason or outbox.damage
        if damage:
            found.append(
                Finding(
                    "FAIL",
                    "outbox undamaged",
                    damage,
                    "look at the moved-aside file, then `sensor-bridge outbox ack-corrupt`",
                )
            )
        if s.pending and s.oldest_pending_age_s > 3600:
            found.append(
                Finding(
                    "WARN",
                    "outbox draining",
                    f"{s.pending} pending, oldest {_ago(s.oldest_pending_age_s)}",
                    "see the uplink line of `sensor-bridge status`",
                )
            )
        else:
            found.append(Finding("PASS", "outbox draining", f"{s.pending} pending"))
        if s.dead_letter:
            found.append(
                Finding(
                    "WARN",
                    "dead-letter table",
                    f"{s.dead_letter} entries",
                    "inspect with `sensor-bridge outbox list --dead`; `outbox retry-dead` after a fix",
                )
            )
        if s.dropped:
            found.append(
                Finding(
                    "FAIL",
                    "nothing dropped",
                    f"{s.dropped} readings were shed",
                    "the uplink was down too long for outbox.max_mb; raise it or fix the uplink",
                )
            )
        return found
    finally:
        outbox.close()


def check_recent_errors(config: Config) -> list[Finding]:
    if not shutil.which("journalctl"):
        return []
    try:
        out = subprocess.run(
            [
                "journalctl",
                "-u",
                "sensor-bridge*",
                "-p",
                "warning",
                "--since",
                "-24h",
                "-n",
                "5",
                "--no-pager",
                "-o",
                "cat",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return []
    if not out or out.startswith("-- No entries"):
        return [Finding("PASS", "recent errors", "none in the last 24 h")]
    return [
        Finding(
            "WARN",
            "recent errors",
            shown_safely(out.splitlines()[-1]),  # a log line may quote what a camera sent
            "journalctl -u 'sensor-bridge*' -p warning --since -24h",
        )
    ]


def _unit(service: str) -> str:
    from .status import UNITS

    return UNITS.get(service, service)


CHECKS: tuple[Callable[[Config], list[Finding]], ...] = (
    check_host,
    check_services,
    check_sensors,
    check_uplink,
    check_heartbeats,
    check_outbox,
    check_recent_errors,
)


def _doctor(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    print(f"PASS config {config.source_path}: {len(config.sensors)} sensor(s)")
    failed = warned = 0
    # [fleet] alone: no uplink, no sensors yet; what there is to check is the host and services.
    checks = CHECKS[:2] if config.waiting_for_the_cloud else CHECKS
    for check in checks:
        for f in check(config):
            print(mask_urls(f"{f.verdict} {f.check}: {f.detail}"))  # details quote URLs and errors
            if f.fix:
                print(f"     fix: {f.fix}")
            failed += f.verdict == "FAIL"
            warned += f.verdict == "WARN"
    print(f"\n{doctor_verdict(failed, warned)}")
    return 1 if failed else 0


def doctor_verdict(failed: int, warned: int) -> str:
    """The last line of ``doctor``: "all checks passed" only when nothing warned either."""
    warnings = f"{warned} warning(s)"
    if failed:
        return f"{failed} problem(s) found" + (f", {warnings}" if warned else "")
    return f"no problems, {warnings}: see the WARN lines" if warned else "all checks passed"


# ---------------------------------------------------------------- sensors / outbox


def _sensors_test(args: argparse.Namespace) -> int:
    from .sources.base import SensorError, source_class

    config = config_from_args(args)
    try:
        sensor = config.sensor(args.id)
    except KeyError as exc:
        print(exc.args[0])
        return 2
    status = 0
    source = source_class(sensor)
    for kind in source.sample_kinds(sensor):
        try:
            rows = source.sample(sensor, kind, hours=args.hours)
        except SensorError as exc:
            print(f"{sensor.id} {kind}: FAILED: {exc}")
            status = 1
            continue
        print(f"{sensor.id} {kind}: {len(rows)} period(s)")
        for r in rows:
            w = r.wire()
            mark = "final" if r.final else "growing"
            print(f"  {w['period_start']} .. {w['period_end']} {mark:<7} {json.dumps(r.values)}")
    return status


def _outbox(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.action == "ack-corrupt":
        notes = OutboxDamage(config.outbox_path)
        for note in notes.notes():
            print(f"acknowledged: {note.get('reason')} ({note.get('at')})")
        print(f"{notes.clear()} outbox damage note(s) cleared")
        return 0
    readonly = args.action == "list"
    outbox = Outbox.of(config, readonly=readonly)
    try:
        if outbox.damage:
            print(f"DAMAGE: {outbox.damage}")
        if args.action == "list":
            _outbox_list(outbox, args.dead, args.limit, config.mqtt.devices if config.mqtt else [])
        elif args.action == "retry-dead":
            print(f"queued {outbox.retry_dead()} dead-lettered reading(s) again")
        elif args.action == "purge-dead":
            print(f"forgot {outbox.purge_dead()} dead-letter entr(ies)")
    finally:
        outbox.close()
    return 0


def _outbox_list(outbox: Outbox, dead: bool, limit: int, devices: list[Any] | None = None) -> None:
    if dead:  # grouped by device and reason, with counts (dead_letters.py)
        latest, total = outbox.dead_letters(limit), outbox.stats().dead_letter
        # the true count of each group, not the display limit's (issue 22: "50 x" when 676 were)
        everything = outbox.dead_letters(total) if total > len(latest) else None
        for line in dead_letters.listing(latest, devices, everything):
            print(line)
        if everything:
            print(f"the latest {len(latest)} shown of {total}; --limit {total} shows all")
    else:
        for body in outbox.pending_list(limit):
            if "unreadable" in body:
                print(
                    f"UNREADABLE {body['id'][:16]}: {body['unreadable']} (the service moves it to the dead letters)"
                )
                continue
            print(
                f"{body['period_start']} {body['sensor_id']:<16} {body['kind']:<14}"
                f" rev {body['revision']} {'final' if body['final'] else 'growing'}"
            )
    s = outbox.stats()
    print(f"pending {s.pending}, dead-letter {s.dead_letter}, dropped {s.dropped}")
    if outbox.reset_reason:
        print(f"DAMAGE: {outbox.reset_reason}")


def register(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="one screen: services, sensors, outbox, uplink")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(func=_status)

    doctor = commands.add_parser(
        "doctor", help="run the troubleshooting checklist and suggest fixes"
    )
    doctor.set_defaults(func=_doctor)

    sensors = commands.add_parser("sensors", help="talk to one sensor")
    sensor_commands = sensors.add_subparsers(
        dest="sensors_command", metavar="ACTION", required=True
    )
    test = sensor_commands.add_parser(
        "test", help="one live read of a sensor; print the parsed periods"
    )
    test.add_argument("id", help="the sensor's id in the config")
    test.add_argument("--hours", type=int, default=3, help="how far back to read (default 3)")
    test.set_defaults(func=_sensors_test)

    outbox = commands.add_parser("outbox", help="look into and repair the outbox")
    outbox.add_argument(
        "action",
        choices=("list", "retry-dead", "purge-dead", "ack-corrupt"),
        help="ack-corrupt: a person has seen the outbox damage note; stop reporting it",
    )
    outbox.add_argument("--dead", action="store_true", help="with list: show the dead-letter table")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.set_defaults(func=_outbox)
