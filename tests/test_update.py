"""`sensor-bridge update`: signed releases from image/release.py, a health gate, rollback by itself.

Releases are built by the project's own script from this working tree (x86_64 only, to stay
fast) with bumped versions, and served by a loopback HTTP server. The "bridge" is a folder
standing in for /opt/sensor-bridge (SENSOR_BRIDGE_ROOT) whose services are real processes:
the restart command is a script that (re)starts `sensor-bridge run` from the venv link (and
the real watchdog, in a network namespace of its own so its gateway probe stays inside).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, REPO, base_tables, wait_for, write_config
from test_collector import assert_receiver_matches_truth, backfill_start, held, sensor_table, truth

from appliance.outbox import SCHEMA_VERSION
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver

RELEASE = [sys.executable, str(REPO / "image" / "release.py")]
UNIT = REPO / "appliance" / "units" / "sensor-bridge-config.service"
GATE_S = 12

needs_tools = pytest.mark.skipif(
    not shutil.which("ssh-keygen")
    or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode,
    reason="needs ssh-keygen and `unshare -n` (root): the watchdog's probe must stay in its own namespace",
)


# ---------------------------------------------------------------- releases


def keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def sign(key: Path, manifest: Path) -> None:
    """``manifest``.sig beside it, as image/release.py signs a release (any key: a stranger's too)."""
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-Y",
            "sign",
            "-f",
            str(key),
            "-n",
            "sensor-bridge-release",
            str(manifest),
        ],
        check=True,
    )


def build_release(out: Path, key: Path, cache: Path, version: str, source: Path = REPO) -> None:
    done = subprocess.run(
        [
            *RELEASE,
            "build",
            "--key",
            str(key),
            "--out",
            str(out),
            "--version",
            version,
            "--arch",
            "x86_64",
            "--wheel-cache",
            str(cache),
            "--source",
            str(source),
            "--notes",
            f"test {version}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)


def patched_tree(into: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of this checkout's package with ``{file: (old, new)}`` applied."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "appliance", "image"):
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, into / name, ignore=shutil.ignore_patterns("__pycache__", "out")
            )
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, into / name)
    for name, (old, new) in edits.items():
        text = (into / name).read_text()
        assert old in text, f"{name} has no {old!r}"
        (into / name).write_text(text.replace(old, new, 1))
    return into


def channel(served: Path, name: str, releases: Path, *versions: str) -> str:
    """A release folder ``name`` holding ``versions`` of ``releases``; its path on the server."""
    folder = served / name
    folder.mkdir()
    for v in versions:
        shutil.copytree(releases / v, folder / v)
    (folder / "index.json").write_text(json.dumps({"versions": list(versions)}))
    return name


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """0.1.0 (this tree), 0.2.0 (this tree), 0.3.0 (its collector dies at start), 0.4.0 (the next outbox schema)."""
    base = tmp_path_factory.mktemp("releases")
    key, stranger = keypair(base, "release"), keypair(base, "stranger")
    out, cache = base / "out", base / "wheels"
    started = time.monotonic()
    build_release(out, key, cache, "0.1.0")
    first = time.monotonic() - started
    build_release(out, key, cache, "0.2.0")
    broken = patched_tree(
        base / "broken",
        {
            "appliance/collector.py": (
                "def _run(args: argparse.Namespace) -> int:\n",
                "def _run(args: argparse.Namespace) -> int:\n    raise SystemExit('this release is broken')\n",
            )
        },
    )
    build_release(out, key, cache, "0.3.0", broken)
    schema2 = patched_tree(
        base / "schema2",
        {
            "appliance/outbox/schema.py": (
                f"\nSCHEMA_VERSION = {SCHEMA_VERSION}\n",
                f"\nSCHEMA_VERSION = {SCHEMA_VERSION + 1}\n",
            )
        },
    )
    build_release(out, key, cache, "0.4.0", schema2)
    print(f"first release {first:.1f} s, all four {time.monotonic() - started:.1f} s")
    signers = base / "release-signers"
    signers.write_text(
        subprocess.run(
            [*RELEASE, "signers", f"{key}.pub"], capture_output=True, text=True, check=True
        ).stdout
    )
    return {"out": out, "key": key, "stranger": stranger, "signers": signers}


@pytest.fixture(scope="session")
def server(releases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    """A static HTTP server on loopback with release folders (channels) a test adds under ``served``."""
    served = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    out = releases["out"]
    channel(served, "stable", out, "0.1.0", "0.2.0")
    channel(served, "broken", out, "0.1.0", "0.2.0", "0.3.0")
    channel(served, "schema", out, "0.1.0", "0.2.0", "0.4.0")
    bad_sig = channel(served, "badsig", out, "0.2.0")
    (served / bad_sig / "0.2.0" / "manifest.json.sig").unlink()
    sign(releases["stranger"], served / bad_sig / "0.2.0" / "manifest.json")
    tampered = channel(served, "tampered", out, "0.2.0")
    wheel = next((served / tampered / "0.2.0").glob("sensor_bridge-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "served": served}
    httpd.shutdown()


# ---------------------------------------------------------------- a bridge


RESTART = """#!/bin/bash
# Stands in for `systemctl restart`: stop the services, start them again from the venv link.
here=$(dirname "$0")
unset PYTHONPATH  # the services run the venv's code, not this checkout's
for svc in collector watchdog; do
    pid=$(cat "$here/$svc.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
done
"$ROOT/venv/bin/sensor-bridge" -c "$CONFIG" run >>"$here/collector.log" 2>&1 </dev/null &
echo $! >"$here/collector.pid"
unshare -n "$ROOT/venv/bin/sensor-bridge" -c "$CONFIG" watchdog >>"$here/watchdog.log" 2>&1 </dev/null &
echo $! >"$here/watchdog.pid"
"""


class Bridge:
    """An install folder, a config, and services started by the restart script."""

    def __init__(
        self,
        tmp: Path,
        releases: dict[str, Any],
        url: str,
        camera: SimCamera,
        receiver: SimReceiver,
    ) -> None:
        self.root = tmp / "opt"
        self.root.mkdir()
        shutil.copy(releases["signers"], self.root / "release-signers")
        self.tables = base_tables(tmp, receiver.url)
        self.tables["sensors"] = [sensor_table("entrance", camera.url)]
        self.tables["watchdog"] = {
            "reboot": False,
            "check_s": 1,
        }
        self.tables["update"] = {"url": url, "gate_s": GATE_S}
        self.config = write_config(tmp / "config.toml", self.tables)
        self.services = tmp / "services"
        self.services.mkdir()
        restart = self.services / "restart.sh"
        restart.write_text(RESTART)
        restart.chmod(0o755)
        # The watchdog's restart and reboot are fixed `systemctl` calls found through PATH:
        # a systemctl that does nothing comes first, so this test never acts on the machine.
        fake_bin = tmp / "bin"
        fake_bin.mkdir()
        (fake_bin / "systemctl").write_text("#!/bin/sh\nexit 0\n")
        (fake_bin / "systemctl").chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "SENSOR_BRIDGE_ROOT": str(self.root),
            "SENSOR_BRIDGE_RESTART_CMD": str(restart),
            "ROOT": str(self.root),
            "CONFIG": str(self.config),
            "PYTHONPATH": str(REPO),
        }

    def use(self, channel: str) -> None:
        self.tables["update"]["url"] = (
            self.tables["update"]["url"].rsplit("/", 1)[0] + "/" + channel
        )
        write_config(self.config, self.tables)

    def update(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "-c", str(self.config), "update", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**self.env, **(env or {})},
            timeout=600,
        )

    def start_update(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, "-c", str(self.config), "update", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=self.env,
        )

    def running(self) -> str | None:
        target = self.root / "venv"
        if not target.exists():
            return None
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        shown = subprocess.run(
            [str(target / "bin" / "sensor-bridge"), "--version"],
            capture_output=True,
            text=True,
            env=env,
        )
        return shown.stdout.split()[-1] if shown.returncode == 0 else None

    def collector_version(self) -> str | None:
        status = json.loads((Path(self.tables["paths"]["run_dir"]) / "collector.json").read_text())
        return status.get("version")

    def status(self) -> dict[str, Any]:
        return json.loads((self.root / "update-status.json").read_text())

    def restart(self) -> None:
        subprocess.run(
            [self.env["SENSOR_BRIDGE_RESTART_CMD"]], env=self.env, check=True, timeout=60
        )

    def healthy_on(self, version: str) -> None:
        from appliance.config import load_config
        from appliance.update import health_problem

        config = load_config(self.config)
        since = time.time() - 0.5
        wait_for(
            lambda: health_problem(config, version, since) is None,
            timeout=GATE_S * 2,
            what=f"the services healthy on {version}",
        )

    def boot_recovery(self) -> None:
        """What sensor-bridge-config.service runs at boot before the services start."""
        for line in re.findall(r"^ExecStartPre=-?(.*)$", UNIT.read_text(), re.M):
            line = line.replace(
                "/opt/sensor-bridge/venv/bin/sensor-bridge", f"{sys.executable} -m appliance"
            )
            line = line.replace("/opt/sensor-bridge", str(self.root))
            subprocess.run(line, shell=True, env=self.env, cwd=REPO, check=True, timeout=60)

    def stop(self) -> None:
        """Every service this bridge started (an updater killed mid-restart may have left a second set)."""
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.root) in part for part in proc.info["cmdline"] or ()):
                try:
                    proc.kill()
                except psutil.Error:
                    pass


@pytest.fixture
def bridge(tmp_path: Path, releases, server, camera, receiver):
    b = Bridge(tmp_path, releases, server["url"] + "/stable", camera, receiver)
    yield b
    b.stop()


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its link target or size: "nothing changed" is this staying equal."""
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else str(p.stat().st_size))
        for p in sorted(root.rglob("*"))
        if p.name != "update.lock" and "__pycache__" not in p.parts
    }


# ---------------------------------------------------------------- the tests


@needs_tools
def test_good_update_passes_a_broken_one_rolls_back_and_no_reading_is_lost(
    bridge: Bridge, camera, receiver
):
    since = backfill_start()
    first = bridge.update("--to", "0.1.0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert bridge.running() == "0.1.0" and bridge.collector_version() == "0.1.0"

    check = bridge.update("--check")
    assert "available: 0.2.0 (running 0.1.0)" in check.stdout and bridge.running() == "0.1.0"

    started = time.monotonic()
    good = bridge.update()
    good_s = time.monotonic() - started
    assert good.returncode == 0, good.stdout + good.stderr
    assert bridge.running() == "0.2.0" and bridge.collector_version() == "0.2.0"
    assert bridge.status()["ok"] and "updated to 0.2.0" in bridge.status()["last"]

    bridge.use("broken")
    started = time.monotonic()
    bad = bridge.update()
    rollback_s = time.monotonic() - started
    assert bad.returncode == 1
    message = bridge.status()["last"]
    assert message.startswith("update to 0.3.0 failed: ") and message.endswith(
        "; rolled back to 0.2.0"
    ), message
    assert rollback_s < GATE_S + 30
    assert bridge.running() == "0.2.0"
    bridge.healthy_on("0.2.0")
    again = bridge.update()  # marked bad: never tried again by itself
    assert again.returncode == 0 and "up to date: 0.2.0" in again.stdout
    assert not (bridge.root / "venv-0.3.0").exists()

    back = bridge.update("--rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert bridge.running() == "0.1.0" and bridge.collector_version() == "0.1.0"
    wait_for(
        lambda: all(
            held(receiver, "entrance", k).keys() >= truth(camera, k, since).keys()
            for k in ("line_counts", "region_counts")
        ),
        timeout=30,
        what="every period delivered",
    )
    assert_receiver_matches_truth(receiver, camera, "entrance", since)
    print(
        f"good update {good_s:.1f} s; failed update and rollback {rollback_s:.1f} s (gate_s {GATE_S})"
    )


@needs_tools
@pytest.mark.parametrize(
    "channel, env, why",
    [
        ("badsig", {}, "release 0.2.0: bad signature"),
        ("tampered", {}, "sensor_bridge-0.2.0-py3-none-any.whl does not match its sha256"),
        (
            "stable",
            {"SENSOR_BRIDGE_ARCH": "aarch64"},
            "has no files for this bridge's architecture aarch64 (it has x86_64)",
        ),
    ],
)
def test_untrusted_or_foreign_releases_are_refused_with_nothing_changed(
    bridge: Bridge, channel, env, why
):
    (bridge.root / "venv-0.0.9").mkdir()
    os.symlink("venv-0.0.9", bridge.root / "venv")
    before = tree(bridge.root)
    bridge.use(channel)
    refused = bridge.update("--to", "0.2.0", env=env)
    assert refused.returncode == 2
    assert why in refused.stderr and "refused, nothing changed" in refused.stderr
    assert tree(bridge.root) == before


@needs_tools
def test_a_downgrade_across_an_outbox_schema_change_is_refused(bridge: Bridge):
    bridge.use("schema")
    assert bridge.update("--to", "0.4.0").returncode == 0
    before = tree(bridge.root)
    refused = bridge.update("--to", "0.2.0")
    assert refused.returncode == 2
    assert (
        f"keeps the outbox in schema {SCHEMA_VERSION}, this bridge's outbox is already schema"
        f" {SCHEMA_VERSION + 1}" in refused.stderr
    )
    assert bridge.update("--rollback").returncode == 2  # nothing kept before 0.4.0 here
    assert tree(bridge.root) == before and bridge.running() == "0.4.0"


@needs_tools
def test_sigkill_of_the_updater_at_any_step_then_boot_recovery_leaves_a_working_bridge(
    bridge: Bridge,
):
    assert bridge.update("--to", "0.1.0").returncode == 0
    for step in ("download", "build", "switch", "restart", "gate"):
        proc = bridge.start_update("--to", "0.2.0")
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.strip() == f"step: {step}":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=30)
        assert f"step: {step}\n" in seen, "".join(seen)
        bridge.boot_recovery()
        assert bridge.running() == "0.1.0", step
        bridge.restart()  # the services start after the config service
        bridge.healthy_on("0.1.0")
        assert not (bridge.root / "venv.undo").exists()
        assert {p.name for p in bridge.root.glob("venv-*")} <= {"venv-0.1.0", "venv-0.2.0"}
        if step in ("switch", "restart", "gate"):
            assert "update to 0.2.0 failed: interrupted" in bridge.status()["last"], step


def test_the_window_is_read_in_the_bridges_zone_and_rollout_picks_the_same_bridges_first():
    from datetime import UTC, datetime

    from appliance.update import covered, in_window

    sunday_3_30_lisbon_summer = datetime(2025, 7, 27, 2, 30, tzinfo=UTC)  # 03:30 WEST
    assert in_window("Sun 03:00-05:00", "Europe/Lisbon", sunday_3_30_lisbon_summer)
    assert not in_window("Sun 03:00-05:00", "UTC", sunday_3_30_lisbon_summer)  # 02:30 there
    assert not in_window("Sat 03:00-05:00", "Europe/Lisbon", sunday_3_30_lisbon_summer)
    assert in_window("03:00-05:00", "Europe/Lisbon", sunday_3_30_lisbon_summer)
    bridges = [f"store-{n:03}" for n in range(1000)]
    ten = {b for b in bridges if covered(b, 10)}
    assert 60 < len(ten) < 140 and ten <= {b for b in bridges if covered(b, 50)}
    assert not any(covered(b, 0) for b in bridges) and all(covered(b, 100) for b in bridges)


def test_outside_the_window_the_timer_changes_nothing_and_fetches_nothing(tmp_path):
    tables = base_tables(tmp_path, "http://127.0.0.1:9/ingest")
    tables["update"] = {"url": "http://127.0.0.1:9/releases", "window": "00:00-00:00"}
    config = write_config(tmp_path / "config.toml", tables)
    done = subprocess.run(
        [*CLI, "-c", str(config), "update", "--auto"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SENSOR_BRIDGE_ROOT": str(tmp_path / "opt")},
        timeout=60,
    )
    assert done.returncode == 0 and "outside [update] window" in done.stdout
    assert [p.name for p in (tmp_path / "opt").iterdir()] == ["update.lock"]


# ---------------------------------------------------------------- a download stops at its signed size

HUGE = 400 * 1000 * 1000  # what the server offers: a 400 MB "wheel", generated, never on disk
SIGNED_SIZE = 200_000  # what the signed manifest says the wheel weighs
MEASURED = """\
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.exit(done.returncode)
"""


class HugeWheelServer:
    """Serves a signed release whose one wheel is endless: 400 MB of generated bytes, counted as sent."""

    def __init__(self, files: dict[str, bytes], huge: str) -> None:
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                name = self.path.lstrip("/")
                if name == huge:
                    self.send_response(200)
                    self.send_header("Content-Length", str(HUGE))
                    self.end_headers()
                    block = bytes(range(256)) * 4096  # 1 MB
                    try:
                        while outer.sent < HUGE:
                            self.wfile.write(block)
                            outer.sent += len(block)
                    except OSError:
                        pass  # the updater hung up: what we want
                    return
                body = files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen to sign a release")
def test_a_400_mb_wheel_is_refused_at_its_signed_size_with_bounded_memory(tmp_path):
    key = keypair(tmp_path, "release")
    version, wheel = "9.0.0", "sensor_bridge-9.0.0-py3-none-any.whl"
    manifest = {
        "format": "sensor-bridge/release/v1",
        "version": version,
        "outbox_schema": SCHEMA_VERSION,
        "rollout_percent": 100,
        "appliance": wheel,
        "files": {wheel: {"sha256": "0" * 64, "size": SIGNED_SIZE}},
        "architectures": {"x86_64": {"files": [wheel], "notes": []}},
    }
    signed = tmp_path / "manifest.json"
    signed.write_text(json.dumps(manifest))
    sign(key, signed)
    files = {
        "index.json": json.dumps({"versions": [version]}).encode(),
        f"{version}/manifest.json": signed.read_bytes(),
        f"{version}/manifest.json.sig": (tmp_path / "manifest.json.sig").read_bytes(),
    }
    root = tmp_path / "opt"
    root.mkdir()
    (root / "release-signers").write_text(
        subprocess.run(
            [*RELEASE, "signers", f"{key}.pub"], capture_output=True, text=True, check=True
        ).stdout
    )
    server = HugeWheelServer(files, f"{version}/{wheel}")
    try:
        tables = base_tables(tmp_path, "http://127.0.0.1:9/ingest")  # never contacted here
        tables["update"] = {"url": server.url}
        config = write_config(tmp_path / "config.toml", tables)
        done = subprocess.run(
            [sys.executable, "-c", MEASURED, *CLI, "-c", str(config), "update", "--to", version],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
            env={**os.environ, "SENSOR_BRIDGE_ROOT": str(root), "SENSOR_BRIDGE_ARCH": "x86_64"},
        )
    finally:
        server.close()
    peak_mb = int(done.stdout.split()[-1])
    print(f"updater peak RSS {peak_mb} MB; the server sent {server.sent / 1e6:.0f} MB")
    assert done.returncode == 2, done.stderr
    assert f"it is larger than the {SIGNED_SIZE} bytes the manifest gives it" in done.stderr
    assert peak_mb < 100, f"the updater peaked at {peak_mb} MB"
    assert server.sent < HUGE / 4, f"the server got to send {server.sent / 1e6:.0f} MB"
    assert not (root / "downloads").exists() or not any((root / "downloads").rglob("*.whl"))
