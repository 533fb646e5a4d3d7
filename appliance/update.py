"""``sensor-bridge update``: signed releases, installed behind a health gate, rolled back by themselves.

A release (``image/release.py`` makes them; appliance/update_release.py fetches and
checks them) is a folder at ``[update] url``:
``index.json`` lists versions; ``<version>/manifest.json`` lists every wheel
with its sha256 per architecture and is signed (``manifest.json.sig``,
``ssh-keygen -Y sign``, namespace ``sensor-bridge-release``) by a key of the
allowed signers file that provision.sh put on the bridge. An update:

1. downloads the manifest, checks its signature, this bridge's architecture
   and the outbox schema, then the wheels and their hashes, into
   ``/opt/sensor-bridge/downloads``: nothing else changes before all of it holds.
   Each file is streamed to disk and stops at the size the signed manifest gives
   it: a server sending more (or a 400 MB "wheel") costs a chunk of memory, not
   the bridge;
2. builds ``venv-<version>`` from those wheels alone (no index) and runs the
   new version's ``--version`` and ``config check`` against the live config;
3. leaves ``venv.undo`` pointing at the running venv, then switches the
   ``venv`` link in one rename, and restarts the services;
4. the health gate: within ``gate_s`` every enabled service must report ok or
   degraded through its status file and the collector, now the new version,
   must have completed a poll. Passed: ``venv.undo`` becomes
   ``venv.previous`` (what ``--rollback`` goes back to). Failed: ``venv.undo``
   is renamed back over ``venv``, the services restart, the version is marked
   bad (never installed again by itself), and "update to X failed: why; rolled
   back" goes to the journal, ``update-status.json``, ``status`` and the heartbeat.

A power cut anywhere leaves a bootable bridge: while ``venv.undo`` exists the
switch is unconfirmed, and the boot-time ``sensor-bridge-config.service`` renames
it back before any service starts, then ``update --recover`` notes what happened.
The outbox and the config are never touched; a release with an older outbox
schema than the running one is refused.

``--auto`` is what the timer runs: only inside ``[update] window`` (in the
bridge's zone), only when the release's ``rollout_percent`` covers this bridge
(a stable hash of its id), and never a version marked bad. Inside the window it
also reboots for a security update that asked for one (unattended-upgrades),
within the watchdog's reboot budget.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .config import Config, config_from_args
from .status import (
    UNITS,
    effective_state,
    read_json,
    read_status,
    update_gate_accepts,
    write_json_atomic,
)
from .update_layout import Layout, Notes, UpdateError, clean_env, current_schema
from .update_release import Releases, this_arch, version_key

# test_errors and the CLI's callers know the update's error by this module's name.
__all__ = ["UpdateError", "covered", "health_problem", "in_window", "register"]

log = logging.getLogger("sensor-bridge.update")

REBOOT_REQUIRED = "/run/reboot-required"  # unattended-upgrades (update-notifier-common) leaves it
MAX_INTERRUPTED = 2  # a version whose gate a reboot cut short this often is marked bad


# ---------------------------------------------------------------- installing, switching, the gate


class Installer:
    """One update (or rollback) of this bridge, step by step; each step says so on stdout."""

    def __init__(
        self, config: Config | None, config_path: str, layout: Layout | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.layout = layout or Layout.from_env()
        self.notes = Notes(self.layout)
        self.inflight = self.layout.root / "update-inflight.json"

    def step(self, name: str) -> None:
        print(f"step: {name}", flush=True)

    def plan(self, releases: Releases, version: str | None, auto: bool) -> dict[str, Any] | None:
        """The verified manifest to install, or None when this bridge is up to date."""
        running = self.layout.running()
        bad = self.notes.bad()
        candidates = (
            [version]
            if version
            else [
                v
                for v in reversed(releases.versions())
                if running is None or version_key(v) > version_key(running)
            ]
        )
        for candidate in candidates:
            if candidate in bad and not version:
                log.info("skipping %s: marked bad (%s)", candidate, bad[candidate].get("why"))
                continue
            manifest = releases.manifest(candidate)
            if auto and not covered(self.config.bridge.id, manifest.get("rollout_percent", 100)):
                log.info(
                    "%s is rolled out to %s%% of bridges; not to this one yet",
                    candidate,
                    manifest.get("rollout_percent"),
                )
                return None
            if candidate == running:
                raise UpdateError(f"{candidate} is what this bridge runs already")
            self.check_schema(manifest)
            return manifest
        return None

    def check_schema(self, manifest: dict[str, Any]) -> None:
        have = int(
            self.layout.release_of(self.layout.venv).get("outbox_schema") or current_schema()
        )
        want = int(manifest.get("outbox_schema") or 1)
        if want < have:
            raise UpdateError(
                f"refused: {manifest['version']} keeps the outbox in schema {want}, this bridge's outbox is "
                f"already schema {have}; going back would strand the undelivered readings. Install a newer "
                "release instead"
            )

    def install(self, releases: Releases, manifest: dict[str, Any]) -> bool:
        """Download, build, check, switch, gate; True when the new version passed its gate."""
        version = manifest["version"]
        self.step("download")
        folder = releases.download(manifest, this_arch())
        self.step("build")
        name = self.build(folder, manifest)
        shutil.rmtree(folder, ignore_errors=True)
        return self.switch(name, version)

    def build(self, folder: Path, manifest: dict[str, Any]) -> str:
        """venv-<version> from the release's wheels only; its own --version and config check pass."""
        version = manifest["version"]
        name = f"venv-{version}"
        dest = self.layout.root / name
        if name in (self.layout.target(self.layout.venv), self.layout.target(self.layout.previous)):
            raise UpdateError(f"{dest} is in use; not rebuilt")
        shutil.rmtree(dest, ignore_errors=True)
        python = os.environ.get("SENSOR_BRIDGE_PYTHON") or getattr(
            sys, "_base_executable", sys.executable
        )
        wheels = [str(folder / f) for f in manifest["architectures"][this_arch()]["files"]]
        # ensurepip is half the build time on a Pi: when the running venv has pip, it installs into
        # the new one (pip --python) and the new one goes without; a venv without pip (made by an
        # earlier update) builds the next one with its own ensurepip, slower but the same.
        new_python = str(dest / "bin" / "python")
        if importlib.util.find_spec("pip") is not None:
            make = [python, "-m", "venv", "--without-pip", "--system-site-packages", str(dest)]
            pip = [
                sys.executable,
                "-m",
                "pip",
                "--python",
                new_python,
                "--disable-pip-version-check",
            ]
        else:
            make = [python, "-m", "venv", "--system-site-packages", str(dest)]
            pip = [new_python, "-m", "pip", "--disable-pip-version-check"]
        for argv in (
            make,
            [*pip, "install", "-q", "--no-index", "--no-deps", "--no-cache-dir", *wheels],
            [*pip, "check"],
        ):
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=600, env=clean_env()
            )
            if done.returncode != 0:
                shutil.rmtree(dest, ignore_errors=True)
                raise UpdateError(
                    f"building {name} failed ({' '.join(argv[:4])}...): "
                    f"{(done.stderr or done.stdout).strip()[-400:]}"
                )
        self.try_new(dest, version)
        (dest / "release.json").write_text(json.dumps(manifest, indent=1))
        return name

    def try_new(self, dest: Path, version: str) -> None:
        cli = str(dest / "bin" / "sensor-bridge")
        shown = subprocess.run(
            [cli, "--version"], capture_output=True, text=True, timeout=60, env=clean_env()
        )
        checked = subprocess.run(
            [cli, "-c", self.config_path, "config", "check"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
        problem = ""
        if shown.stdout.strip() != f"sensor-bridge {version}":
            problem = f"its --version says {(shown.stdout + shown.stderr).strip()[-200:]!r}"
        elif checked.returncode != 0:
            problem = f"its config check refuses the live config: {checked.stderr.strip()[-400:]}"
        if problem:
            shutil.rmtree(dest, ignore_errors=True)
            raise UpdateError(f"{version} is not installed: {problem}")

    def switch(self, name: str, version: str) -> bool:
        """Point venv at ``name``, restart, gate; roll back by itself when the gate fails."""
        old = self.layout.target(self.layout.venv)
        old_version = self.layout.running()
        write_json_atomic(
            self.inflight,
            {"version": version, "to": name, "from": old, "from_version": old_version},
        )
        self.step("switch")
        if old:
            self.layout.point(self.layout.undo, old)
        self.layout.point(self.layout.venv, name)
        self.step("restart")
        started = time.time()
        self.restart()
        self.step("gate")
        why = gate(self.config, version, started, self.config.update.gate_s)
        if why is None:
            if old:
                self.layout.move(self.layout.undo, self.layout.previous)
            self.inflight.unlink(missing_ok=True)
            self.notes.report(
                f"updated to {version} (from {old_version}); passed its health gate in "
                f"{time.time() - started:.0f} s",
                True,
                version=version,
            )
            self.prune()
            return True
        message = f"update to {version} failed: {why}; rolled back to {old_version}"
        self.notes.mark_bad(version, why)
        if old:
            self.layout.move(self.layout.undo, self.layout.venv)
        self.inflight.unlink(missing_ok=True)
        self.restart()
        self.notes.report(message, False, version=old_version, failed=version)
        self.prune()
        return False

    def restart(self) -> None:
        command = os.environ.get("SENSOR_BRIDGE_RESTART_CMD")
        units = [UNITS[s] for s in self.config.enabled_services()]
        if not command:
            # A release that crash-looped through its gate has used up its units' start limit
            # (StartLimitBurst): without this the rollback's restart is refused and the store
            # stays dark until someone reboots the bridge.
            subprocess.run(
                ["systemctl", "reset-failed", *units],
                capture_output=True,
                timeout=60,
                env=clean_env(),
            )
        argv = shlex.split(command) if command else ["systemctl", "restart", *units]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=clean_env())
        if done.returncode != 0:
            log.warning("%s: %s", " ".join(argv), done.stderr.strip())

    def prune(self) -> None:
        """Remove venvs nothing points at and leftover downloads (a running one is always kept)."""
        keep = {
            self.layout.target(link)
            for link in (self.layout.venv, self.layout.undo, self.layout.previous)
        }
        for path in self.layout.root.glob("venv-*"):
            if path.is_dir() and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.layout.downloads, ignore_errors=True)

    def rollback(self) -> bool:
        """Back to venv.previous, behind the same gate (a failed rollback restores what ran)."""
        previous = self.layout.target(self.layout.previous)
        if not previous or not (self.layout.root / previous).is_dir():
            raise UpdateError(
                "nothing to roll back to: no previous version is kept (only after an update)"
            )
        release = self.layout.release_of(self.layout.previous)
        version = self.layout.version_of(self.layout.previous) or previous
        self.check_schema(release or {"version": version, "outbox_schema": 1})
        return self.switch(previous, version)

    def recover(self) -> str:
        """At boot: an unconfirmed switch is undone (if the unit's rename did not already), and noted."""
        if self.layout.undo.is_symlink():
            self.layout.move(self.layout.undo, self.layout.venv)
        inflight = read_json(self.inflight)
        message = "nothing to recover"
        if inflight:
            version = str(inflight.get("version"))
            if self.layout.target(self.layout.venv) == inflight.get("to"):
                message = (
                    f"updated to {version}; its confirmation was cut short and is taken as done"
                )
                self.notes.report(message, True, version=version)
            else:
                count = self.notes.interrupted(version) + 1
                message = (
                    f"update to {version} failed: interrupted (a reboot or power cut before its health "
                    f"gate passed); rolled back to {inflight.get('from_version')}"
                )
                if count >= MAX_INTERRUPTED:
                    self.notes.mark_bad(version, f"interrupted {count} times")
                self.notes.report(
                    message,
                    False,
                    version=inflight.get("from_version"),
                    failed=version,
                    interrupted={version: count},
                )
            self.inflight.unlink(missing_ok=True)
        self.prune()
        return message


def gate(config: Config, version: str, since: float, gate_s: float) -> str | None:
    """None once every enabled service is ok or degraded and the new collector has polled; else why not."""
    deadline = time.monotonic() + gate_s
    while True:
        why = health_problem(config, version, since)
        if why is None or time.monotonic() > deadline:
            return why
        time.sleep(0.5)


def health_problem(config: Config, version: str, since: float) -> str | None:
    """What keeps the bridge from counting as healthy on ``version`` right now (None: nothing)."""
    run_dir = config.paths.run_dir
    for service in config.enabled_services():
        body = read_status(run_dir, service)
        if not body or float(body.get("written_at") or 0) < since:
            return f"the {service} has not reported since the restart (not running?)"
        state = effective_state(body)
        if not update_gate_accepts(state):
            return f"the {service} is {state}: {body.get('reason') or 'no reason given'}"
    collector = read_status(run_dir, "collector") or {}
    if collector.get("version") != version:
        return f"the collector runs {collector.get('version')}, not {version}"
    if config.sensors and not collector.get("last_collection"):
        return "the collector has not completed a poll"
    return None


def covered(bridge_id: str, percent: float) -> bool:
    """Whether a rollout to ``percent`` of bridges includes this one (the same bridges first, every time)."""
    bucket = int(hashlib.sha256(bridge_id.encode()).hexdigest()[:8], 16) % 100
    return bucket < percent


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def in_window(window: str, zone: str, now: datetime | None = None) -> bool:
    """Whether ``now`` (default: this moment) falls in "Sun 03:00-05:00" (or "03:00-05:00", daily) in ``zone``."""
    found = re.match(r"^(?:(\w{3,5}) )?(\d\d):(\d\d)-(\d\d):(\d\d)$", window)
    if not found:
        return False
    day, h1, m1, h2, m2 = found.groups()
    local = (now or datetime.now(ZoneInfo("UTC"))).astimezone(ZoneInfo(zone))
    if day and day != "Daily" and DAYS[local.weekday()] != day:
        return False
    minute = local.hour * 60 + local.minute
    return int(h1) * 60 + int(m1) <= minute < int(h2) * 60 + int(m2)


def os_reboot_if_due(config: Config) -> str | None:
    """Inside the window: reboot for a security update that asked for one, within the watchdog's budget."""
    if not Path(os.environ.get("SENSOR_BRIDGE_REBOOT_REQUIRED", REBOOT_REQUIRED)).exists():
        return None
    from .watchdog import BUDGET_FILE, REBOOT, RebootBudget

    w = config.watchdog
    budget = RebootBudget(Path(config.paths.state_dir) / BUDGET_FILE)
    if not w.reboot or len(budget.used(w.reboot_window_s, time.time())) >= w.max_reboots:
        return (
            "a security update asks for a reboot; the watchdog's reboot budget is spent, so not now"
        )
    budget.spend(
        w.reboot_window_s, time.time(), "security update (unattended-upgrades) asked for a reboot"
    )
    subprocess.run(REBOOT, timeout=120)  # a fixed action, never a command from the config
    return "rebooting for a security update"


# ---------------------------------------------------------------- the command


def _locked(layout: Layout) -> Any:
    import fcntl

    layout.root.mkdir(parents=True, exist_ok=True)
    handle = open(layout.root / "update.lock", "w")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise UpdateError("another update is running") from None
    return handle


def _update(args: argparse.Namespace) -> int:
    layout = Layout.from_env()
    lock = None
    try:
        lock = _locked(layout)
        if args.recover:  # needs no valid config: it only renames links and notes what happened
            print(Installer(None, args.config, layout).recover())
            return 0
        return _run(args, config_from_args(args), layout)
    except UpdateError as exc:
        log.error("%s", exc)
        print(f"update: {exc}", file=sys.stderr)
        return 2
    finally:
        if lock:
            lock.close()


def _run(args: argparse.Namespace, config: Config, layout: Layout) -> int:
    installer = Installer(config, args.config, layout)
    if args.rollback:
        return 0 if installer.rollback() else 1
    if args.auto:
        if not config.update.auto or not in_window(config.update.window, config.bridge.timezone):
            print(
                f"outside [update] window {config.update.window!r} (or auto = false): nothing to do"
            )
            return 0
        if said := os_reboot_if_due(config):
            print(said)
            return 0
        if not config.update.url:
            print("no [update] url: this bridge does not update itself")
            return 0
    releases = Releases(config.update.url, layout)
    manifest = installer.plan(releases, args.to, args.auto)
    running = layout.running()
    if manifest is None:
        print(f"up to date: {running}")
        return 0
    if args.check:
        print(
            f"available: {manifest['version']} (running {running}); rollout "
            f"{manifest.get('rollout_percent', 100)}%; notes: {manifest.get('notes') or '-'}"
        )
        return 0
    return 0 if installer.install(releases, manifest) else 1


def register(commands: argparse._SubParsersAction) -> None:
    update = commands.add_parser(
        "update",
        help="install a signed release behind a health gate (rolls back by itself)",
        description="Without options: install the newest release at [update] url. The bridge switches to "
        "it only after it verifies, builds and checks it, and goes back by itself when the "
        "services are not healthy within [update] gate_s.",
    )
    which = update.add_mutually_exclusive_group()
    which.add_argument("--check", action="store_true", help="say what is available; change nothing")
    which.add_argument(
        "--to", metavar="VERSION", help="install this version (also one marked bad, or older)"
    )
    which.add_argument(
        "--rollback", action="store_true", help="go back to the version before the last update"
    )
    which.add_argument(
        "--auto",
        action="store_true",
        help="what the timer runs: only inside the window and rollout",
    )
    which.add_argument(
        "--recover", action="store_true", help="at boot: undo a switch a power cut interrupted"
    )
    update.set_defaults(func=_update)
