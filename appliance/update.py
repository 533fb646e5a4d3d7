"""``sensor-bridge update``: signed releases, installed behind a health gate, rolled back by themselves.

A release (``image/release.py`` makes them) is a folder at ``[update] url``:
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
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from . import __version__
from .config import Config, config_from_args
from .errors import BridgeError
from .fleet import UPDATE_STATUS_FILE, install_root
from .status import (
    UNITS,
    effective_state,
    read_json,
    read_status,
    update_gate_accepts,
    write_json_atomic,
)

log = logging.getLogger("sensor-bridge.update")

NAMESPACE = "sensor-bridge-release"
FORMAT = "sensor-bridge/release/v1"
SIGNERS = (
    "release-signers"  # in ROOT, root-owned: provision.sh installs it from the image build's input
)

BAD_FILE = "bad-versions.json"
REBOOT_REQUIRED = "/run/reboot-required"  # unattended-upgrades (update-notifier-common) leaves it
FETCH_TIMEOUT_S = 60
MAX_MANIFEST_BYTES = 1 << 20
CHUNK = 64 * 1024  # a download is read this much at a time: its memory never depends on its size
MAX_INTERRUPTED = 2  # a version whose gate a reboot cut short this often is marked bad
ARCH_NAMES = {
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "armv7l": "armv7l",
    "armv6l": "armv7l",
    "armhf": "armv7l",
    "x86_64": "x86_64",
    "amd64": "x86_64",
}


class UpdateError(BridgeError, RuntimeError):
    """An update that cannot go ahead; the message says why, and nothing was changed."""


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders 0.10.0 after 0.9.1; letters (rc1) before the numbers they precede."""
    return tuple(
        (int(p), "") if p.isdigit() else (-1, p) for p in re.findall(r"\d+|[a-z]+", version)
    )


def this_arch() -> str:
    machine = os.environ.get("SENSOR_BRIDGE_ARCH") or platform.machine()
    return ARCH_NAMES.get(machine.lower(), machine.lower())


def clean_env() -> dict[str, str]:
    """This environment without what would make a venv's programs import another tree's code."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def current_schema() -> int:
    """The outbox schema the running code writes (appliance/outbox/schema.py's SCHEMA_VERSION)."""
    from . import outbox

    return int(getattr(outbox, "SCHEMA_VERSION", 1))


# ---------------------------------------------------------------- where things live


@dataclass(frozen=True)
class Layout:
    """The install folder: venv -> venv-<name>, venv.undo while a switch is unconfirmed, venv.previous."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(install_root())

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def undo(self) -> Path:
        return self.root / "venv.undo"

    @property
    def previous(self) -> Path:
        return self.root / "venv.previous"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def target(self, link: Path) -> str | None:
        try:
            return os.readlink(link)
        except OSError:
            return None

    def point(self, link: Path, target: str) -> None:
        """``link`` -> ``target`` in one rename, on disk before this returns."""
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        self.sync()

    def move(self, link: Path, over: Path) -> None:
        os.replace(link, over)
        self.sync()

    def sync(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def release_of(self, link: Path) -> dict[str, Any]:
        """The manifest a venv was installed from ({} for one provision.sh built from source)."""
        name = self.target(link)
        return (read_json(self.root / name / "release.json") or {}) if name else {}

    def version_of(self, link: Path) -> str | None:
        """The version a venv link points at; one provision.sh built is named after its folder."""
        name = self.target(link)
        if not name:
            return None
        return self.release_of(link).get("version") or name

    def running(self) -> str | None:
        """The version the services run (None before any install); this code's when provision.sh built it."""
        if not self.target(self.venv):
            return None
        return self.release_of(self.venv).get("version") or __version__


class Notes:
    """update-status.json (what the last update did) and bad-versions.json (never again by itself)."""

    def __init__(self, layout: Layout) -> None:
        self.status_path = layout.root / UPDATE_STATUS_FILE
        self.bad_path = layout.root / BAD_FILE

    def bad(self) -> dict[str, Any]:
        return read_json(self.bad_path) or {}

    def mark_bad(self, version: str, why: str) -> None:
        bad = self.bad()
        bad[version] = {"why": why, "at": time.time()}
        write_json_atomic(self.bad_path, bad)

    def interrupted(self, version: str) -> int:
        body = read_json(self.status_path) or {}
        return int(body.get("interrupted", {}).get(version, 0))

    def report(self, message: str, ok: bool, **extra: Any) -> None:
        (log.info if ok else log.error)("%s", message)
        body = {
            "last": message,
            "ok": ok,
            "at": time.time(),
            "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        body.update(extra)
        write_json_atomic(self.status_path, body)


# ---------------------------------------------------------------- the release folder


class Releases:
    """A folder of signed releases at ``url``; every answer checked before it is believed."""

    def __init__(self, url: str, layout: Layout) -> None:
        if not url:
            raise UpdateError("no [update] url in the config: this bridge does not update itself")
        self.url = url.rstrip("/")
        self.layout = layout
        self.signers = layout.root / SIGNERS

    def fetch(self, path: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small file (index, manifest, signature), refused when larger than ``limit``."""
        url = f"{self.url}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 - https/http from config
                data = answer.read(limit + 1)
        except OSError as exc:
            raise UpdateError(f"cannot fetch {url}: {exc}") from None
        if len(data) > limit:
            raise UpdateError(f"{url} is larger than {limit} bytes; refused, nothing changed")
        return data

    def versions(self) -> list[str]:
        try:
            versions = json.loads(self.fetch("index.json", MAX_MANIFEST_BYTES))["versions"]
        except (ValueError, KeyError, TypeError):
            raise UpdateError(f"{self.url}/index.json is not a release index") from None
        return sorted((str(v) for v in versions), key=version_key)

    def manifest(self, version: str) -> dict[str, Any]:
        """The release's manifest, its signature verified; UpdateError otherwise."""
        if not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version):
            raise UpdateError(f"{version!r} is not a version")
        text = self.fetch(f"{version}/manifest.json", MAX_MANIFEST_BYTES)
        signature = self.fetch(f"{version}/manifest.json.sig", MAX_MANIFEST_BYTES)
        self.verify(text, signature, version)
        manifest = json.loads(text)
        if manifest.get("format") != FORMAT or manifest.get("version") != version:
            raise UpdateError(
                f"release {version}: its manifest is not a {FORMAT} of version {version}"
            )
        return manifest

    def verify(self, text: bytes, signature: bytes, version: str) -> None:
        if not self.signers.is_file():
            raise UpdateError(
                f"no allowed signers file {self.signers}: provision.sh installs it "
                "(image/build.sh --release-key); without it no release is trusted"
            )
        with tempfile.TemporaryDirectory() as tmp:
            sig = Path(tmp) / "manifest.json.sig"
            sig.write_bytes(signature)
            found = subprocess.run(
                ["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(self.signers)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            principal = found.stdout.split("\n")[0].strip()
            checked = subprocess.run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(self.signers),
                    "-I",
                    principal or "nobody",
                    "-n",
                    NAMESPACE,
                    "-s",
                    str(sig),
                ],
                input=text,
                capture_output=True,
                timeout=30,
            )
        if found.returncode != 0 or checked.returncode != 0:
            raise UpdateError(
                f"release {version}: bad signature (not signed by a key in {self.signers}); "
                "refused, nothing changed"
            )

    def download(self, manifest: dict[str, Any], arch: str) -> Path:
        """This architecture's files of a verified release, each hash checked; the folder holding them."""
        version = manifest["version"]
        wanted = manifest.get("architectures", {}).get(arch)
        if not wanted:
            have = ", ".join(sorted(manifest.get("architectures", {}))) or "none"
            raise UpdateError(
                f"release {version} has no files for this bridge's architecture {arch} "
                f"(it has {have}); refused, nothing changed"
            )
        folder = self.layout.downloads / version
        shutil.rmtree(self.layout.downloads, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            for name in wanted["files"]:
                self.fetch_file(manifest, name, folder)
        except BaseException:
            shutil.rmtree(self.layout.downloads, ignore_errors=True)
            raise
        return folder

    def fetch_file(self, manifest: dict[str, Any], name: str, folder: Path) -> None:
        """One file of the release, streamed to disk and hashed on the way; never past its signed size."""
        version = manifest["version"]
        if "/" in name or name.startswith(".") or name not in manifest.get("files", {}):
            raise UpdateError(
                f"release {version}: file {name!r} is not allowed; refused, nothing changed"
            )
        signed = manifest["files"][name]
        size = signed.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UpdateError(
                f"release {version}: {name} has no size in the signed manifest; refused, nothing changed"
            )
        url = f"{self.url}/{version}/{name}"
        digest, got = hashlib.sha256(), 0
        part = folder / f".{name}.part"
        try:
            with (
                urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer,  # noqa: S310 - https/http from config
                part.open("wb") as out,
            ):
                while chunk := answer.read(min(CHUNK, size + 1 - got)):
                    got += len(chunk)
                    if got > size:
                        raise UpdateError(
                            f"release {version}: {name} does not match its sha256 in the signed "
                            f"manifest: it is larger than the {size} bytes the manifest gives it; "
                            "download stopped, refused, nothing changed"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise UpdateError(f"cannot fetch {url}: {exc}") from None
        if got != size or digest.hexdigest() != signed["sha256"]:
            raise UpdateError(
                f"release {version}: {name} does not match its sha256 in the signed "
                f"manifest ({got} of {size} bytes; tampered or damaged); refused, nothing changed"
            )
        part.rename(folder / name)


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
