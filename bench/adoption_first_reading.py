"""Power-on to first reading for an adopted bridge, on one machine: ``python bench/adoption_first_reading.py``.

A bridge with only ``[fleet]`` (what an image built with ``--fleet-url`` holds) is
started as its fleet agent, with the reference receiver as the cloud and two
simulated cameras; a stand-in ``systemctl`` (tests/fleet_helpers.py) starts the real
collector when the agent applies the config. The claim and the config are done the
moment the code appears (a person is slower), so the times are the bridge's own:
agent start -> claim code shown -> claimed -> config applied -> first reading stored.
Runs ``--runs`` times (default 3) and prints each step's median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import free_port, write_config  # noqa: E402
from fleet_helpers import fake_systemd, read_json, start_agent, stop_collector, stop_process  # noqa: E402

from appliance.sim.camera import SimCamera  # noqa: E402
from appliance.sim.receiver import SimReceiver  # noqa: E402


def wait(condition, what: str, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def one_run(folder: Path) -> dict[str, float]:
    with (
        SimReceiver(api_key="hand-key") as cloud,
        SimCamera(username="admin", password="pw", lines=2, regions=1, seed=1) as one,
        SimCamera(username="admin", password="pw", lines=2, regions=1, seed=2) as two,
    ):
        cloud.adoption.retry_after_s = 1
        etc, boot = folder / "etc", folder / "boot"
        etc.mkdir()
        boot.mkdir()
        (etc / "token").write_text(cloud.new_enroll_token())
        config = write_config(
            etc / "config.toml",
            {
                "fleet": {
                    "url": cloud.origin,
                    "enroll_token_file": str(etc / "token"),
                    "check_s": 1,
                },
                "bridge": {"require_time_sync": False},
                "paths": {"state_dir": str(folder / "state"), "run_dir": str(folder / "run")},
                "health": {"listen": f"127.0.0.1:{free_port()}"},
                "led": {"backend": "none"},
            },
        )
        env = fake_systemd(folder / "systemd")
        t0 = time.monotonic()
        agent = start_agent(config, boot, env)
        marks: dict[str, float] = {}
        try:
            status = folder / "run" / "fleet.json"
            code = wait(lambda: (read_json(status) or {}).get("claim_code"), "the claim code")
            marks["claim code shown"] = time.monotonic() - t0
            bridge_id = cloud.claim(code, label="Bench Store", timezone="Europe/Lisbon")
            wait(lambda: (read_json(status) or {}).get("bridge_id"), "claimed")
            marks["claimed"] = time.monotonic() - t0
            sensors = [
                {
                    "id": f"door-{i}",
                    "url": cam.url,
                    "username": "admin",
                    "password": "pw",
                    "interval_s": 1,
                    "backfill_h": 1,
                    "collect": ["line_counts"],
                }
                for i, cam in enumerate((one, two), 1)
            ]
            cloud.set_config(bridge_id, {"sensors": sensors})
            state = folder / "state" / "fleet" / "state.json"
            wait(lambda: (read_json(state) or {}).get("status") == "applied", "applied")
            marks["config applied"] = time.monotonic() - t0
            wait(lambda: cloud.records(bridge_id), "the first reading")
            marks["first reading in the cloud"] = time.monotonic() - t0
        finally:
            stop_process(agent)
            stop_collector(folder / "systemd")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = []
    for _ in range(parser.parse_args().runs):
        with tempfile.TemporaryDirectory() as folder:
            runs.append(one_run(Path(folder)))
    for step in runs[0]:
        print(
            f"{step:<28} {statistics.median(r[step] for r in runs):6.2f} s (median of {len(runs)})"
        )


if __name__ == "__main__":
    main()
