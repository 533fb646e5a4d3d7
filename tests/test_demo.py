"""`sensor-bridge demo`, the README's first command: readings visibly arrive, and it stops cleanly."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from conftest import CLI, REPO, free_port, run_cli, wait_for, write_config
from test_collector import start_collector, stop

from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver


def test_the_demo_shows_readings_arriving_and_stops_cleanly() -> None:
    done = run_cli("demo", "--seconds", "8", timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"receiver: stored \d+ readings? \(\d+ new", out), out
    held = int(re.search(r"the receiver holds (\d+) readings", out).group(1))
    assert held > 24, "a day of backfill from two cameras, line and region counts"
    assert "stopped cleanly" in out
    assert "try:" in out and "status" in out, "the demo tells a person what to try next"


def status_when(config: Path, text: str) -> str | None:
    """`status`'s screen once it holds ``text``."""
    out = run_cli("-c", str(config), "status").stdout
    return out if text in out else None


def _laptop_section() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"## Try your store config on a laptop\n(.*?)\n## ", text, re.S)
    assert match, "README.md has no 'Try your store config on a laptop' section"
    return match.group(1)


def test_the_readmes_laptop_section_turns_the_example_config_into_a_running_bridge(
    tmp_path: Path,
) -> None:
    """Issue 22: the README's laptop overrides on the example store config, against a simulated
    camera and receiver (on free ports instead of the README's), give a bridge that `status`
    calls OK once the dry-run watchdog of the README runs beside it; without it, not OK."""
    section = _laptop_section()
    assert ".venv/bin/sensor-bridge" in section and "api_key" not in section.split("```toml")[1]
    override = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    store = tomllib.loads((REPO / "image" / "sensor-bridge.example.toml").read_text())
    # CHANGE-ME, as a person fills it in: shaped like cloud/bin/add-bridge's keys
    store["uplink"]["api_key"] = "sbk_" + "k3y" * 14 + "x"
    for name, table in override.items():
        if name == "sensors":
            store["sensors"][0].update(table[0])
        else:
            store[name] = {**store.get(name, {}), **table}
    store["paths"] = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    with (
        SimCamera(timezone="Europe/Lisbon", username="admin", password="pw") as camera,
        SimReceiver(api_key=store["uplink"]["api_key"]) as receiver,
    ):
        # the README's loopback addresses, on ports this test owns
        store["uplink"].update(url=receiver.url, heartbeat_url=receiver.heartbeat_url)
        store["sensors"][0]["url"] = camera.url
        store["health"]["listen"] = f"127.0.0.1:{free_port()}"
        config = write_config(tmp_path / "store.toml", store)
        check = run_cli("-c", str(config), "config", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        collector = start_collector(config)
        watchdog = None
        try:
            wait_for(lambda: receiver.records("store-042"), timeout=60, what="readings")
            alone = wait_for(
                lambda: status_when(config, "collector  ok"), timeout=60, what="the collector ok"
            )
            assert "collector  ok" in alone and "OK" not in alone.splitlines()[0], alone
            assert "watchdog" in alone.splitlines()[1], alone
            command = re.search(r"\.venv/bin/sensor-bridge -c store\.toml (watchdog .*)", section)
            watchdog = subprocess.Popen(
                [*CLI, "-c", str(config), *command.group(1).split()],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for(
                lambda: run_cli("-c", str(config), "status").stdout.startswith(
                    "sensor-bridge store-042: OK"
                ),
                timeout=60,
                what="status OK with the watchdog beside the collector",
            )
        finally:
            if watchdog is not None:
                watchdog.terminate()
                watchdog.wait(30)
            code, out = stop(collector)
        assert code == 0, out
