"""`doctor` and `outbox list --dead` say what is true (issue 22): a stale service is "not running", not
"error: all sensors polled"; a key the cloud let in is said so; heartbeats off is a warning; "all checks
passed" only when nothing warned; the dead-letter listing gives the true count, not its display limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import base_tables, closed_port_url, run_cli, write_config

from appliance.config import load_config
from appliance.console import doctor_verdict
from appliance.outbox import DeadEntry, Outbox
from appliance.sim.receiver import SimReceiver
from appliance.status import status_path, write_status


def doctor(config: Path) -> list[str]:
    done = run_cli("-c", str(config), "doctor", timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("last_state", "last_reason"),
    [("ok", "all sensors polled, outbox draining"), ("error", "no sensor reachable")],
)
def test_a_stale_collector_is_not_running_whatever_its_last_words(
    tmp_path: Path, last_state: str, last_reason: str
) -> None:
    path = write_config(tmp_path / "config.toml", base_tables(tmp_path, closed_port_url()))
    run_dir = load_config(path).paths.run_dir
    write_status(run_dir, "collector", last_state, reason=last_reason)
    status_file = status_path(run_dir, "collector")
    body = json.loads(Path(status_file).read_text())
    body["written_at"] = time.time() - 3 * 3600  # the collector died three hours ago
    Path(status_file).write_text(json.dumps(body))
    line = next(x for x in doctor(path) if x.startswith("FAIL service collector"))
    assert "not running" in line and "3h ago" in line and last_reason in line, line
    assert f"collector: {last_state}: " not in line


def test_key_wording_heartbeat_warning_and_the_verdict(tmp_path: Path) -> None:
    key = "sbk_" + "k3y" * 14 + "x"  # shaped like cloud/bin/add-bridge's keys
    with SimReceiver(api_key=key) as receiver:
        tables = base_tables(tmp_path, receiver.url, api_key=key)
        heard = doctor(write_config(tmp_path / "heard.toml", tables))  # left out: on (issue 22)
        tables["uplink"]["heartbeat_url"] = ""  # the one way to turn them off
        silent = doctor(write_config(tmp_path / "silent.toml", tables))
    key = next(x for x in silent if x.startswith("PASS cloud API key accepted"))
    assert "probe answered HTTP 400" not in key and "let the key in" in key, key
    warning = next(x for x in silent if "heartbeats on" in x)
    assert warning.startswith("WARN heartbeats on: off") and "never heard from" in warning
    fix = silent[silent.index(warning) + 1]  # it names what turned them off
    assert fix.strip().startswith("fix:") and 'heartbeat_url = ""' in fix, fix
    assert f"PASS heartbeats on: {receiver.heartbeat_url}" in heard, heard
    assert "all checks passed" not in silent[-1] and "warning(s)" in silent[-1], silent[-1]


def test_doctor_verdict_never_says_all_passed_under_a_warning() -> None:
    assert doctor_verdict(0, 0) == "all checks passed"
    assert doctor_verdict(0, 2) == "no problems, 2 warning(s): see the WARN lines"
    assert doctor_verdict(3, 1) == "3 problem(s) found, 1 warning(s)"
    assert doctor_verdict(1, 0) == "1 problem(s) found"


def test_outbox_list_dead_says_the_true_total_not_its_display_limit(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", base_tables(tmp_path, closed_port_url()))
    box = Outbox.of(load_config(path))
    refused = "id: already stored for another bridge (sensor ids must be unique across bridges)"
    box.add_dead(
        DeadEntry("uplink", refused, json.dumps({"sensor_id": "entrance-1", "n": i}), f"{i:064x}")
        for i in range(676)
    )
    box.close()
    done = run_cli("-c", str(path), "outbox", "list", "--dead")
    assert done.returncode == 0, done.stderr
    assert f"uplink: 50 shown of 676 x {refused}" in done.stdout, done.stdout
    assert "the latest 50 shown of 676; --limit 676 shows all" in done.stdout
    everything = run_cli("-c", str(path), "outbox", "list", "--dead", "--limit", "1000")
    assert f"uplink: 676 x {refused}" in everything.stdout and "shown of" not in everything.stdout
