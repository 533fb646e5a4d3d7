"""The LED tells the truth from across the room: the right pattern, its timing, and no-config.

Patterns are checked on gpiozero's MockFactory pins (their state history, with
timing tolerances); the service itself runs as a real process against
stand-in services' status files.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import time
from pathlib import Path

import pytest
from conftest import CLI, REPO, run_cli, wait_for
from gpiozero.pins.mock import MockFactory, MockPWMPin
from watchdog_helpers import Lab, lab_fixture, read_json  # noqa: F401 - lab is a fixture

from appliance.config import LedConfig
from appliance.led import PATTERNS, Light, markdown_table
from appliance.status import MAINTENANCE, STATES, UNCLAIMED, write_json_atomic

MOCK = {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}


def segments(pin) -> list[tuple[float, float]]:
    """(value, seconds held) for every completed state of a mock pin."""
    held = [
        (float(state.state), nxt.timestamp)
        for state, nxt in zip(pin.states, pin.states[1:], strict=False)
    ]
    while held and held[0][0] == 0.0:  # dark before the pattern's first step
        held.pop(0)
    return held


def near(values: list[float], expected: float, tolerance: float) -> bool:
    return bool(values) and abs(statistics.median(values) - expected) <= tolerance


def test_every_pattern_blinks_at_its_pace():
    factory = MockFactory(pin_class=MockPWMPin)
    pins = {state: 10 + i for i, state in enumerate(PATTERNS)}
    lights = {
        state: Light.open(LedConfig(backend="gpiozero", pin=pin), factory)
        for state, pin in pins.items()
    }
    for state, light in lights.items():
        light.show(state)
    time.sleep(5.6)  # one maintenance period (5 s) and the start of the next flash
    for light in lights.values():
        light.close()
    seen = {state: segments(factory.pin(pin)) for state, pin in pins.items()}

    on = {s: [t for v, t in seen[s] if v == 1.0] for s in seen}
    off = {s: [t for v, t in seen[s] if v == 0.0] for s in seen}
    assert seen["ok"] == [(1.0, seen["ok"][0][1])]  # on once, until closed
    assert (
        len(on["degraded"]) >= 4
        and near(on["degraded"], 0.5, 0.05)
        and near(off["degraded"], 0.5, 0.05)
    )
    assert (
        len(on["error"]) >= 16
        and near(on["error"], 0.125, 0.03)
        and near(off["error"], 0.125, 0.03)
    )
    # double blink every 2 s: on 0.2, off 0.2, on 0.2, off 1.4
    assert len(on["no-config"]) >= 4 and near(on["no-config"], 0.2, 0.05)
    assert sorted(round(t, 1) for t in off["no-config"])[0] == pytest.approx(0.2, abs=0.1)
    assert max(off["no-config"]) == pytest.approx(1.4, abs=0.15)
    # short flash every 5 s
    assert on[MAINTENANCE][0] == pytest.approx(0.2, abs=0.05)
    assert off[MAINTENANCE][0] == pytest.approx(4.8, abs=0.15)
    # breathing: many levels in between, a full rise-and-fall every 3 s
    levels = [v for v, _ in seen["starting"]]
    assert len({round(v, 2) for v in levels if 0 < v < 1}) >= 20
    t, peaks = 0.0, []
    for value, held in [(s.state, s.timestamp) for s in factory.pin(pins["starting"]).states]:
        t += held
        if value == 1.0:
            peaks.append(t)
    assert len(peaks) >= 2 and peaks[1] - peaks[0] == pytest.approx(3.0, abs=0.2)


def test_an_rgb_led_adds_colour():
    factory = MockFactory(pin_class=MockPWMPin)
    light = Light.open(LedConfig(backend="gpiozero", rgb=[5, 6, 7]), factory)
    red, green, blue = (factory.pin(n) for n in (5, 6, 7))
    light.show("error")
    wait_for(lambda: len(red.states) >= 4, timeout=5)
    assert {s.state for s in green.states} == {0.0} and {s.state for s in blue.states} == {0.0}
    light.show("degraded")  # yellow: red and some green
    wait_for(lambda: green.state > 0, timeout=5)
    assert red.state == 1.0 and blue.state == 0.0
    light.close()


def test_without_pwm_a_plain_pin_still_blinks():
    factory = MockFactory()  # pins that cannot dim
    light = Light.open(LedConfig(backend="gpiozero", pin=9), factory)
    assert "no PWM" in light.description
    light.show("error")
    wait_for(lambda: len(factory.pin(9).states) >= 5, timeout=5)
    assert {s.state for s in factory.pin(9).states} == {False, True}
    light.close()


def test_the_table_covers_every_state_and_is_the_readme_s():
    assert set(PATTERNS) == {*STATES, MAINTENANCE, UNCLAIMED}  # issue 23 adds unclaimed
    printed = run_cli("led", "table")
    assert printed.returncode == 0 and printed.stdout.strip() == markdown_table()
    readme = (REPO / "README.md").read_text() if (REPO / "README.md").exists() else ""
    block = re.search(r"<!-- led-table[^>]*-->\n(.*?)<!-- /led-table -->", readme, re.S)
    if not block:
        pytest.skip("README.md has no <!-- led-table --> marker")
    assert block.group(1).strip() == markdown_table(), (
        "README's LED table differs: paste `sensor-bridge led table`"
    )


def test_led_test_plays_every_pattern():
    result = run_cli(
        "led",
        "test",
        "--each",
        "0.05",
        env={**os.environ, **MOCK, "SENSOR_BRIDGE_CONFIG": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    shown = [line.split(":")[0] for line in result.stdout.splitlines()[1:]]
    assert shown == list(PATTERNS)


# ------------------------------------------------------------------ the service


def led_config(lab: Lab, pin: int = 17, **tables) -> Path:
    return lab.config(led={"backend": "gpiozero", "pin": pin}, **tables)


def led_status(lab: Lab) -> dict:
    return read_json(lab.run_dir / "led.json") or {}


def showing(lab: Lab, state: str, timeout: float = 15) -> dict:
    return wait_for(
        lambda: (s := led_status(lab)).get("showing") == state and s,
        timeout,
        f"the LED to show {state}",
    )


def test_the_led_shows_the_worst_state_and_maintenance_wins(lab: Lab, tmp_path):
    led_config(lab, push={"listen": "127.0.0.1:0", "password": "x"})
    lab.service("collector", "ok")
    lab.service("watchdog", "ok")
    relay = lab.service("relay", "degraded")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(15)
        lab.spawn(
            [*CLI, "-c", str(lab.config_path), "led"],
            "led.log",
            {**MOCK, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
        )
        assert sock.recv(4096) == b"READY=1"
        assert sock.recv(4096).startswith(b"WATCHDOG=1")

    status = showing(lab, "degraded")
    assert (
        status["pattern"] == PATTERNS["degraded"].led
        and "relay: stand-in relay" in status["reason"]
    )
    assert status["state"] == "ok" and status["light"] == "LED on GPIO17"

    relay.kill()  # its file goes stale: a dead service is an error
    write_json_atomic(lab.run_dir / "relay.json", {"state": "ok", "written_at": time.time() - 100})
    assert "relay: status file stale" in showing(lab, "error")["reason"]

    assert lab.cli("maintenance", "on").returncode == 0
    showing(lab, MAINTENANCE)
    assert lab.cli("maintenance", "off").returncode == 0
    showing(lab, "error")


def test_no_config_is_shown_and_the_led_keeps_watching_the_file(lab: Lab):
    path = led_config(lab, pin=22)
    good = path.read_text()
    path.write_text(good.replace("[uplink]", "[uplink]\nurll = 1"))
    lab.service("collector", "ok")
    lab.service("watchdog", "ok")
    proc = lab.spawn([*CLI, "-c", str(path), "led"], "led.log", MOCK)

    status = showing(lab, "no-config")
    assert status["state"] == "no-config" and "uplink.urll: unknown key" in status["reason"]
    assert status["light"] == "LED on GPIO22"  # the [led] table alone was still readable

    path.write_text(good)
    showing(lab, "ok")
    path.unlink()  # gone altogether: still running, still saying so
    assert "file not found" in showing(lab, "no-config")["reason"]
    assert proc.poll() is None


@pytest.mark.skipif(Path("/dev/gpiochip0").exists(), reason="this machine has GPIO")
def test_without_gpio_it_says_so_once_and_keeps_reporting(lab: Lab):
    led_config(lab)
    lab.service("collector", "ok")
    lab.service("watchdog", "ok")
    env = {"GPIOZERO_PIN_FACTORY": None}  # gpiozero's own choice: none works here
    lab.spawn([*CLI, "-c", str(lab.config_path), "led"], "led.log", env)
    # The LED service is degraded, and so is the bridge: /health says the same (it counts led.json).
    status = showing(lab, "degraded")
    assert status["state"] == "degraded" and "cannot drive the LED on GPIO17" in status["light"]
    assert "led: its LED cannot be driven" in status["reason"]
    first = status["written_at"]
    wait_for(lambda: led_status(lab).get("written_at", 0) > first + 2, what="more status writes")
    assert lab.log("led.log").count("cannot drive the LED") == 1


def test_the_watchdog_drives_the_led_and_it_tells_a_hung_collector(lab: Lab):
    """On a bridge one process runs the watchdog and the LED: the LED still shows the truth
    when the collector hangs, and follows the config (no-config, then no LED at all)."""
    path = led_config(lab, watchdog={"stall_s": 600})
    good = path.read_text()
    collector = lab.service("collector", "ok")
    proc = lab.spawn(
        [*CLI, "-c", str(path), "watchdog", "--network-probe", "true"], "watchdog.log", MOCK
    )
    status = showing(lab, "ok")
    assert status["pid"] == proc.pid and status["light"] == "LED on GPIO17"
    assert wait_for(lambda: (read_json(lab.run_dir / "watchdog.json") or {}).get("pid") == proc.pid)

    collector.freeze()  # hung: its status file goes stale
    write_json_atomic(
        lab.run_dir / "collector.json", {"state": "ok", "written_at": time.time() - 100}
    )
    assert "collector: status file stale" in showing(lab, "error")["reason"]

    path.write_text(good.replace("[uplink]", "[uplink]\nurll = 1"))
    assert "uplink.urll: unknown key" in showing(lab, "no-config")["reason"]

    path.write_text(good.replace('backend = "gpiozero"', 'backend = "none"'))
    wait_for(lambda: "not driving one" in lab.log("watchdog.log"), what="the LED let go")
    last = led_status(lab)["written_at"]
    watchdog_written = (read_json(lab.run_dir / "watchdog.json") or {})["written_at"]
    wait_for(
        lambda: (
            (read_json(lab.run_dir / "watchdog.json") or {})["written_at"] > watchdog_written + 2
        ),
        what="the watchdog writing on",
    )
    assert led_status(lab)["written_at"] == last and proc.poll() is None
