"""The watchdog heals what a restart or a reboot heals, and nothing else, and never boot-loops.

Real processes throughout: stand-in services that write status files, the
`sensor-bridge watchdog` command inside a network namespace the test creates,
and restart/reboot commands that only write down that they were called.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
from conftest import CLI, run_cli, wait_for
from watchdog_helpers import Lab, lab_fixture, needs_netns, read_json  # noqa: F401 - lab is a fixture

PUSH = {"listen": "127.0.0.1:0", "password": "push-secret"}


@needs_netns
def test_silent_services_are_restarted_then_the_bridge_rebooted(lab: Lab):
    lab.config(push=PUSH)  # [push] turns the relay on; the LED stays off (no backend)
    collector = lab.service("collector")
    lab.service("led")  # writes, but is not enabled: never a reason to act
    wd = lab.watchdog(lab.netns())
    wd.after_checks(2)
    collector.kill()  # the collector stops writing; the relay never started at all

    wait_for(lambda: lab.reboots(), what="a reboot")
    wait_for(
        lambda: {"sensor-bridge.service", "sensor-bridge-relay.service"} <= set(lab.restarts()),
        what="both units restarted",
    )
    calls = lab.calls()
    assert calls[0].startswith("restart ")  # a restart first; a reboot only when that did not help
    assert all("sensor-bridge-led.service" not in line for line in calls)

    status = wait_for(
        lambda: wd.decisions("reboot") and wd.status(), what="the reboot in watchdog.json"
    )
    restarts = {d["unit"]: d["reason"] for d in status["decisions"] if d["action"] == "restart"}
    assert "collector has not written its status" in restarts["sensor-bridge.service"]
    assert "relay has no status file" in restarts["sensor-bridge-relay.service"]
    reboot = wd.decisions("reboot")[0]
    assert "after a restart" in reboot["reason"]
    assert status["reboots_in_window"] >= 1
    remembered = json.loads((lab.state_dir / "watchdog-reboots.json").read_text())
    assert remembered["reboots"][0]["reason"] == reboot["reason"]


@needs_netns
def test_a_sigstopped_service_is_restarted_and_recovers(lab: Lab):
    collector = lab.service("collector")
    lab.config(restart_then=f"kill -CONT {collector.pid}")  # our "restart" wakes it up again
    wd = lab.watchdog(lab.netns())
    wd.after_checks(2)
    collector.freeze()

    wait_for(lambda: wd.decisions("recovered"), what="the collector to recover")
    assert lab.restarts() == ["sensor-bridge.service"]
    assert lab.reboots() == 0
    assert "collector has not written its status" in wd.decisions("restart")[0]["reason"]


@needs_netns
def test_a_memory_hog_is_restarted(lab: Lab):
    hog = lab.service("collector", hog_mb=80)
    lab.config(watchdog={"max_rss_mb": 60, "stall_s": 30}, restart_then=f"kill {hog.pid}")
    wd = lab.watchdog(lab.netns())

    reason = wait_for(lambda: wd.decisions("restart"), what="a restart")[0]["reason"]
    assert f"collector (pid {hog.pid}) uses" in reason and "max_rss_mb = 60" in reason
    wait_for(lambda: lab.restarts() == ["sensor-bridge.service"], what="restart_cmd to run")
    assert lab.reboots() == 0


@needs_netns
def test_the_reboot_budget_outlives_the_watchdog(lab: Lab):
    # No default route in the namespace: the network is down from the start.
    lab.config(watchdog={"network_down_s": 0.5, "stall_s": 600, "max_reboots": 2})
    ns = lab.netns()
    first = lab.watchdog(ns)
    wait_for(lambda: lab.reboots() == 1, what="the first reboot")
    first.stop()  # as if that reboot happened: a new watchdog starts
    second = lab.watchdog(ns)
    wait_for(lambda: lab.reboots() == 2, what="the second reboot")
    refused = wait_for(lambda: second.decisions("no-reboot"), what="the refusal")[0]
    assert "reboot budget spent: 2 reboot(s)" in refused["reason"]
    assert "no default route" in refused["reason"]
    second.stop()

    third = lab.watchdog(ns)
    wait_for(lambda: third.decisions("no-reboot"), what="the third watchdog's refusal")
    status = third.status()
    assert status["state"] == "error" and "reboot budget spent" in status["reason"]
    assert status["reboots_in_window"] == 2
    assert lab.reboots() == 2


@needs_netns
def test_past_the_budget_it_keeps_restarting_services_only(lab: Lab):
    lab.config(watchdog={"stall_s": 0.6, "max_reboots": 0})
    wd = lab.watchdog(lab.netns())  # no collector at all
    wait_for(lambda: len(lab.restarts()) >= 3, what="repeated restarts")
    assert lab.reboots() == 0
    assert set(lab.restarts()) == {"sensor-bridge.service"}
    wait_for(lambda: wd.status().get("state") == "error")
    assert "max_reboots = 0" in wd.decisions("no-reboot")[0]["reason"]


@needs_netns
def test_maintenance_holds_the_watchdog_until_switched_off(lab: Lab):
    lab.config(watchdog={"stall_s": 0.5, "network_down_s": 0.5})
    assert lab.cli("maintenance", "on").returncode == 0
    wd = lab.watchdog(lab.netns())  # no collector, no network: reasons everywhere

    status = wd.after_checks(12)  # a dozen looks, each >= 2x the limits past
    assert status["state"] == "maintenance", status
    assert lab.calls() == []
    assert status["decisions"] == []

    off = lab.cli("maintenance", "off")
    assert off.returncode == 0 and "heals again" in off.stdout
    wait_for(lambda: lab.restarts() and lab.reboots(), what="healing after maintenance")


@needs_netns
def test_api_down_or_disk_full_is_no_reason_to_reboot(lab: Lab):
    # The collector is alive and says the uplink is failing; the gateway answers; the disk
    # counts as full because the config asks for more free space than any disk has.
    lab.config(watchdog={"stall_s": 0.5, "network_down_s": 0.5}, outbox={"min_free_disk_mb": 10**9})
    lab.service("collector", state="degraded")
    wd = lab.watchdog(lab.netns(gateway=True))

    status = wd.after_checks(15)
    assert status["network"]["up"] is True and "answers" in status["network"]["detail"]
    assert status["state"] == "error" and "disk nearly full" in status["reason"]
    assert lab.calls() == []


@needs_netns
def test_gateway_gone_reboots_after_network_down_s(lab: Lab):
    lab.config(watchdog={"stall_s": 600, "network_down_s": 1.0, "max_reboots": 5})
    ns = lab.netns(gateway=True)
    wd = lab.watchdog(ns)
    wait_for(lambda: (wd.status().get("network") or {}).get("up"), what="the network to be up")

    ns.gateway_link(up=False)  # the cable is pulled at the router's end
    wait_for(lambda: lab.reboots() == 1, what="a reboot for the link")
    noticed = wd.decisions("noticed")[0]
    reboot = wd.decisions("reboot")[0]
    assert "is down" in noticed["reason"] and "network_down_s = 1)" in reboot["reason"]
    assert (
        int(re.search(r"network down for (\d+) s", reboot["reason"]).group(1)) >= 1
    )  # not at once

    ns.gateway_link(up=True)
    wait_for(lambda: (wd.status().get("network") or {}).get("up"), what="the network to come back")
    ns.silence_gateway()  # link up, but nobody answers at the gateway's address
    wait_for(lambda: lab.reboots() == 2, what="a reboot for the silent gateway")
    assert (
        f"gateway {ns.GATEWAY} on {ns.ours} does not answer" in wd.decisions("reboot")[-1]["reason"]
    )


@needs_netns
def test_dry_run_decides_but_does_nothing(lab: Lab):
    lab.config(watchdog={"stall_s": 0.5, "network_down_s": 0.5})
    wd = lab.watchdog(lab.netns(), "--dry-run")
    wait_for(lambda: wd.decisions("restart") and wd.decisions("reboot"), what="both decisions")
    assert all(d["dry_run"] for d in wd.decisions())
    assert lab.calls() == []
    assert not (lab.state_dir / "watchdog-reboots.json").exists()
    wait_for(lambda: "dry run, would restart sensor-bridge.service" in lab.log("watchdog.log"))


@needs_netns
def test_an_invalid_config_makes_it_act_on_nothing(lab: Lab):
    path = lab.config(watchdog={"stall_s": 0.5, "network_down_s": 0.5})
    good = path.read_text()
    path.write_text(good.replace("[watchdog]", "[watchdog]\nstal_s = 3"))
    wd = lab.watchdog(lab.netns())
    status = wd.after_checks(3)  # it looks every 2 s while the config is broken
    assert status["state"] == "no-config"
    assert "watchdog.stal_s: unknown key" in status["reason"]
    assert lab.calls() == []

    path.write_text(good)  # fixed: healing starts
    wait_for(lambda: lab.restarts(), what="a restart once the config is fixed")


@needs_netns
def test_it_tells_systemd_it_is_ready_and_alive(lab: Lab, tmp_path):
    lab.config()
    lab.service("collector")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(20)
        lab.watchdog(lab.netns(), env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        seen = [sock.recv(4096).decode() for _ in range(3)]
    assert seen[0] == "READY=1"
    assert all(m.startswith("WATCHDOG=1\nSTATUS=") for m in seen[1:])


def test_a_probe_command_can_judge_the_network_instead(lab: Lab):
    # Outside any namespace: the command is the only thing that looks at the network.
    lab.config(watchdog={"stall_s": 600, "network_down_s": 0.5})
    flag = lab.tmp / "network"
    flag.write_text("up")
    probe = f"sh -c 'echo cable {flag}; grep -q up {flag}'"
    wd = lab.spawn(
        [*CLI, "-c", str(lab.config_path), "watchdog", "--network-probe", probe], "watchdog.log"
    )
    status_file = lab.run_dir / "watchdog.json"
    status = wait_for(
        lambda: (s := read_json(status_file) or {}).get("pid") == wd.pid and s.get("network") and s
    )
    assert status["network"]["up"] is True and "exited 0: cable" in status["network"]["detail"]
    flag.write_text("down")
    wait_for(lambda: lab.reboots() == 1, what="a reboot")
    decisions = wait_for(
        lambda: [
            d
            for d in (read_json(status_file) or {}).get("decisions", [])
            if d["action"] == "reboot"
        ],
        what="the reboot in watchdog.json",
    )
    assert "exited 1: cable" in decisions[0]["reason"]


# ------------------------------------------------------------------ no command comes from the config


HOSTILE = "sh -c 'id > {proof}'"


@pytest.mark.parametrize("key", ["restart_cmd", "reboot_cmd"])
def test_a_command_in_the_config_is_refused_by_check_and_by_the_boot_import(lab: Lab, key: str):
    # Issue 19: the root watchdog ran this text; a card in a laptop was enough to own the bridge.
    proof = lab.tmp / "proof.txt"
    path = lab.config(watchdog={key: HOSTILE.format(proof=proof)})
    checked = lab.cli("config", "check")
    assert checked.returncode == 2, checked.stdout
    assert f"watchdog.{key}: no longer configurable; restart and reboot are fixed" in (
        checked.stderr
    )

    boot = lab.tmp / "boot"
    boot.mkdir()
    card = boot / "sensor-bridge.toml"
    card.write_text(path.read_text())
    target = lab.tmp / "etc" / "config.toml"
    imported = run_cli("config", "import", "--from", str(card), "--to", str(target))
    assert imported.returncode == 1, imported.stdout + imported.stderr
    assert (
        f"watchdog.{key}: no longer configurable" in (boot / "sensor-bridge-error.txt").read_text()
    )
    assert not target.exists()
    assert not proof.exists()


@needs_netns
def test_a_hostile_command_in_the_config_is_never_run(lab: Lab):
    proof = lab.tmp / "proof.txt"
    lab.config(
        watchdog={
            "stall_s": 0.5,
            "network_down_s": 0.5,
            "restart_cmd": HOSTILE.format(proof=proof),
            "reboot_cmd": HOSTILE.format(proof=proof),
        }
    )
    wd = lab.watchdog(lab.netns())  # no collector, no network: it would restart and reboot
    status = wd.after_checks(3)
    assert status["state"] == "no-config"
    assert "watchdog.restart_cmd: no longer configurable" in status["reason"]
    assert lab.calls() == [] and not proof.exists()


@needs_netns
def test_an_old_card_with_the_documented_defaults_still_heals(lab: Lab):
    lab.config(
        watchdog={"restart_cmd": "systemctl restart {unit}", "reboot_cmd": "systemctl reboot"}
    )
    assert lab.cli("config", "check").returncode == 0
    lab.watchdog(lab.netns())  # no collector: restarted with the fixed action, then a reboot
    wait_for(lambda: lab.reboots(), what="a reboot")
    assert lab.calls()[0] == "restart sensor-bridge.service"
    assert "reboot" in lab.calls()


# ------------------------------------------------------------------ commands without the service


def test_maintenance_commands_and_expiry(lab: Lab):
    lab.config()
    assert "maintenance off" in lab.cli("maintenance", "status").stdout
    on = lab.cli("maintenance", "on", "--for", "1s")
    assert on.returncode == 0 and "maintenance on until" in on.stdout
    assert "maintenance on since" in lab.cli("maintenance", "status").stdout
    wait_for(lambda: "the last one ended" in lab.cli("maintenance", "status").stdout, what="expiry")

    bad = lab.cli("maintenance", "on", "--for", "soon")
    assert bad.returncode == 2 and "expected a duration like 2h" in bad.stderr
    too_long = lab.cli("maintenance", "on", "--for", "30d")
    assert too_long.returncode == 2 and "at most 7d" in too_long.stderr


def test_maintenance_survives_in_the_state_dir(lab: Lab):
    from appliance.config import load_config
    from appliance.maintenance import maintenance_active

    config = load_config(lab.config())
    assert maintenance_active(config) is None
    assert lab.cli("maintenance", "on", "--for", "1h30m").returncode == 0
    active = maintenance_active(config)
    assert active and 5390 <= active["remaining_s"] <= 5400 and active["by"]
    assert (lab.state_dir / "maintenance.json").exists()


@pytest.mark.parametrize(
    ("tables", "service", "on"),
    [
        ({}, "relay", False),
        ({"push": PUSH}, "relay", True),
        ({"mqtt": {"host": "127.0.0.1"}}, "relay", True),
        ({}, "led", False),
        ({"led": {"backend": "gpiozero"}}, "led", True),
        ({}, "collector", True),
    ],
)
def test_config_enabled_says_which_units_run(lab: Lab, tables, service, on):
    lab.config(**tables)
    result = lab.cli("config", "enabled", service)
    assert result.returncode == (0 if on else 1), result.stdout + result.stderr


def test_config_enabled_with_a_broken_config_runs_only_the_led(lab: Lab):
    lab.config_path.write_text("[uplink\n")
    assert lab.cli("config", "enabled", "led").returncode == 0  # to show no-config
    assert lab.cli("config", "enabled", "relay").returncode == 1
