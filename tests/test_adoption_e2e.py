"""Issue 23's whole story with the real programs on one machine: adoption end to end.

The cloud app under `next start` on a real PostgreSQL (tests/cloud_helpers.py),
a bridge (`sensor-bridge fleet`, which starts a real `sensor-bridge run` through
a stand-in systemctl: tests/fleet_helpers.py) started with only `[fleet]` in
its config, and two simulated cameras. It enrolls; five wrong codes lock
claiming; the right one claims it (read from the claim file on its "boot
partition"); a config with two cameras arrives and their readings land in
PostgreSQL under the claimed id; a second version with a wrong camera password
is rolled back by the bridge and reported (heartbeat -> database -> fleet
page); the cloud goes away and the bridge keeps its config; a card file takes
over (config_source local, "managed on site"); a re-flashed card is a new,
flagged enrollment. It prints the time from the bridge's start to its first
reading in PostgreSQL.

The bridge reaches the cloud through a loopback gate (a TCP forwarder this
test opens and closes), so "the cloud unreachable" is a closed loopback port.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from cloud_helpers import CloudStack
from conftest import free_port, run_cli, wait_for, write_config

from appliance.sim.camera import SimCamera

fleet_helpers = pytest.importorskip(
    "fleet_helpers", reason="tests/fleet_helpers.py (helper fleet-bridge's branch) is not merged"
)

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30
PASSWORD = "door-" + secrets.token_hex(8)  # the cameras' password: never on a page
WRONG = "wrong-" + secrets.token_hex(8)
CLAIM_CODE = re.compile(
    r"\b([23456789ABCDEFGHJKMNPQRSTVWXYZ]{4}-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{4})\b"
)


class LoopbackGate:
    """A TCP forwarder on 127.0.0.1:<port> to the cloud app; closed, the port refuses connections."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> LoopbackGate:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(32)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def fleet_only(tmp_path: Path, origin: str, token: str) -> Path:
    """What an image built with --fleet-url --enroll-token-file holds: [fleet] and local tables."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "enroll-token").write_text(token + "\n")
    return write_config(
        etc / "config.toml",
        {
            "fleet": {
                "url": origin,
                "enroll_token_file": str(etc / "enroll-token"),
                "gate_s": 20,
                "check_s": 1,
            },
            "bridge": {"require_time_sync": False},
            "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")},
            "health": {"listen": f"127.0.0.1:{free_port()}"},
            "led": {"backend": "none"},
        },
    )


def store_toml(one: SimCamera, two: SimCamera, second_password: str = PASSWORD) -> str:
    """The store's tables as a person writes them for `bridges config set`."""
    cameras = [("entrance-1", one, PASSWORD), ("entrance-2", two, second_password)]
    text = '[bridge]\ntimezone = "Europe/Lisbon"\n'
    for sensor_id, camera, password in cameras:
        text += (
            f'\n[[sensors]]\nid = "{sensor_id}"\ntype = "milesight-camera"\nurl = "{camera.url}"\n'
            f'username = "admin"\npassword = "{password}"\ninterval_s = 1\nbackfill_h = 2\n'
            'collect = ["line_counts"]\ntimeout_s = 2\n'
        )
    return text


def wait_claim_code(boot: Path) -> str:
    claim_file = boot / "sensor-bridge-claim.txt"
    text = wait_for(
        lambda: claim_file.exists() and claim_file.read_text(),
        timeout=90,
        what="the claim code on the boot partition",
    )
    match = CLAIM_CODE.search(text)
    assert match, text
    return match.group(1)


def one_row(stack: CloudStack, sql: str) -> tuple[Any, ...] | None:
    rows = stack.pg.query(sql)
    return rows[0] if rows else None


def page(stack: CloudStack, path: str) -> str:
    answer = requests.get(f"{stack.base_url}{path}", auth=stack.fleet_auth, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.text.replace("<!-- -->", "")


def test_adopted_bridge_from_enroll_to_reflash(cloud_stack: CloudStack, tmp_path: Path) -> None:
    stack = cloud_stack
    stack.reset()
    token = stack.bridges("enroll-token", "new", "--label", "e2e").stdout.strip()
    gate = LoopbackGate(int(stack.base_url.rsplit(":", 1)[1])).open()
    systemd = tmp_path / "systemd"
    env = fleet_helpers.fake_systemd(systemd)
    boot = tmp_path / "boot"
    boot.mkdir()
    config = fleet_only(tmp_path, gate.origin, token)
    agent = None
    with (
        SimCamera(username="admin", password=PASSWORD, lines=2, regions=1, seed=1) as one,
        SimCamera(username="admin", password=PASSWORD, lines=2, regions=1, seed=2) as two,
    ):
        try:
            started = time.monotonic()
            agent = fleet_helpers.start_agent(config, boot, env)

            # 1. it enrolls and shows its code; the fleet page lists it (never the code)
            code = wait_claim_code(boot)
            wait_for(
                lambda: one_row(stack, "select serial from bridge_enrollments"),
                timeout=60,
                what="the enrollment in PostgreSQL",
            )
            (serial,) = one_row(stack, "select serial from bridge_enrollments")
            fleet = page(stack, "/bridges")
            assert serial in fleet and code not in fleet

            # 2. five wrong codes lock claiming, even for the right one
            for _ in range(5):
                wrong = stack.bridges(
                    "claim", "2222-2222", "--label", "x", "--timezone", "UTC", check=False
                )
                assert wrong.returncode != 0
            locked = stack.bridges(
                "claim",
                code,
                "--label",
                "Lisbon Chiado",
                "--timezone",
                "Europe/Lisbon",
                check=False,
            )
            assert locked.returncode != 0 and "claiming is locked" in locked.stderr
            # 15 minutes pass (the attempts are moved back in time)
            stack.pg.psql("update bridge_claim_attempts set at = at - interval '16 minutes'")

            # 3. claim with the right code: the CLI prints the id, the bridge learns it
            claimed_at = time.monotonic()
            bridge_id = stack.bridges(
                "claim", code, "--label", "Lisbon Chiado", "--timezone", "Europe/Lisbon"
            ).stdout.strip()
            assert bridge_id == "lisbon-chiado"
            wait_for(
                lambda: not (boot / "sensor-bridge-claim.txt").exists(),
                timeout=90,
                what="the bridge to learn it was claimed (claim file removed)",
            )
            learned_at = time.monotonic()

            # 4. a config with two cameras; readings land under the claimed id
            v1 = tmp_path / "v1.toml"
            v1.write_text(store_toml(one, two))
            configured_at = time.monotonic()
            assert stack.bridges("config", "set", bridge_id, str(v1)).stdout.strip() == "1"
            wait_for(
                lambda: one_row(
                    stack, f"select 1 from bridge_readings where bridge_id = '{bridge_id}' limit 1"
                ),
                timeout=180,
                what="the first reading in PostgreSQL",
            )
            first_reading = time.monotonic()
            print(
                f"\nadoption: bridge start -> first reading in PostgreSQL: "
                f"{first_reading - started:.1f} s; of it, claim -> the bridge knows: "
                f"{learned_at - claimed_at:.1f} s (its next enroll, retry_after_s 30), "
                f"config saved -> first reading: {first_reading - configured_at:.1f} s "
                "(simulated cameras, fleet.check_s 1)"
            )
            wait_for(
                lambda: (
                    {
                        r[0]
                        for r in stack.pg.query(
                            f"select distinct sensor_id from bridge_readings where bridge_id = '{bridge_id}'"
                        )
                    }
                    == {"entrance-1", "entrance-2"}
                ),
                timeout=120,
                what="readings of both cameras",
            )
            wait_for(
                lambda: (
                    one_row(
                        stack,
                        "select status, running_version, config_source from bridge_config_state"
                        f" where bridge_id = '{bridge_id}'",
                    )
                    == ("applied", 1, "cloud")
                ),
                timeout=150,
                what="a heartbeat saying version 1 runs",
            )
            assert stack.pg.query(
                f"select count(*) from bridge_readings where bridge_id <> '{bridge_id}'"
            ) == [(0,)]

            # 5. version 2 breaks a camera: rolled back by the bridge, reported, shown
            v2 = tmp_path / "v2.toml"
            v2.write_text(store_toml(one, two, second_password=WRONG))
            assert stack.bridges("config", "set", bridge_id, str(v2)).stdout.strip() == "2"
            reported = wait_for(
                lambda: (
                    (
                        row := one_row(
                            stack,
                            "select status, tried_version, running_version, error from bridge_config_state"
                            f" where bridge_id = '{bridge_id}'",
                        )
                    )
                    and row[0] == "rolled_back"
                    and row
                ),
                timeout=240,
                what="the rollback reported in PostgreSQL",
            )
            assert reported[1:3] == (2, 1) and "entrance-2" in reported[3]
            assert one_row(
                stack,
                f"select refused from bridge_config_versions where bridge_id = '{bridge_id}' and version = 2",
            ) == ("rolled_back",)
            shown = page(stack, f"/bridges/{bridge_id}")
            assert "version 2 rolled back by the bridge" in shown and "entrance-2" in shown
            assert PASSWORD not in shown and WRONG not in shown
            running_config = config.read_text()

            # 6. the cloud unreachable: the bridge keeps running version 1
            collector = fleet_helpers.collector_pid(systemd)
            gate.close()
            time.sleep(8)  # several check_s and heartbeat attempts against a closed port
            assert config.read_text() == running_config
            assert fleet_helpers.collector_pid(systemd) == collector
            reopened = stack.pg.query("select now()::text")[0][0]
            gate.open()
            # readings are per period (a new row only every few minutes): the
            # heartbeat arriving again is what shows the link is back
            wait_for(
                lambda: one_row(
                    stack,
                    f"select 1 from bridges where id = '{bridge_id}'"
                    f" and last_heartbeat_at > '{reopened}'::timestamptz",
                ),
                timeout=180,
                what="a heartbeat once the cloud is back",
            )
            assert config.read_text() == running_config

            # 7. a card file takes over: config_source local, managed on site
            credential = tmp_path / "state" / "fleet" / "credential"
            card = write_config(
                boot / "sensor-bridge.toml",
                {
                    "bridge": {"id": bridge_id, "require_time_sync": False},
                    "paths": {
                        "state_dir": str(tmp_path / "state"),
                        "run_dir": str(tmp_path / "run"),
                    },
                    "uplink": {
                        "url": f"{gate.origin}/api/bridge/v1/ingest",
                        "api_key_file": str(credential),
                        "heartbeat_s": 2,
                    },
                    "sensors": [
                        {
                            "id": "entrance-1",
                            "url": one.url,
                            "username": "admin",
                            "password": PASSWORD,
                            "interval_s": 1,
                            "backfill_h": 2,
                            "collect": ["line_counts"],
                        }
                    ],
                    "led": {"backend": "none"},
                },
            )
            imported = run_cli("-c", str(config), "config", "import", "--from", str(card))
            assert imported.returncode == 0, imported.stderr
            wait_for(
                lambda: (
                    one_row(
                        stack,
                        f"select config_source from bridge_config_state where bridge_id = '{bridge_id}'",
                    )
                    == ("local",)
                ),
                timeout=180,
                what="the card's config reported as local",
            )
            shown = page(stack, f"/bridges/{bridge_id}")
            assert "Managed on site" in shown and 'id="config-form"' not in shown
            refused = stack.bridges("config", "set", bridge_id, str(v1), check=False)
            assert refused.returncode != 0 and "managed on site" in refused.stderr
        finally:
            if agent is not None:
                fleet_helpers.stop_process(agent)
            fleet_helpers.stop_collector(systemd)

        # 8. a re-flashed card (same board, new credential): a new enrollment, flagged
        for name in ("credential", "claim-code", "state.json"):
            with contextlib.suppress(FileNotFoundError):
                (tmp_path / "state" / "fleet" / name).unlink()
        (boot / "sensor-bridge.toml").unlink(missing_ok=True)
        config = fleet_only(tmp_path, gate.origin, token)
        agent = fleet_helpers.start_agent(config, boot, env)
        try:
            new_code = wait_claim_code(boot)
            assert new_code != code
            flagged = wait_for(
                lambda: one_row(
                    stack,
                    "select serial, reflashed_from from bridge_enrollments where claimed_at is null",
                ),
                timeout=90,
                what="the re-flashed bridge's enrollment",
            )
            assert flagged == (serial, bridge_id)
            row = re.search(
                rf'<tr[^>]*data-serial="{serial}".*?</tr>', page(stack, "/bridges"), re.S
            )
            assert row and "re-flashed" in row.group(0) and bridge_id in row.group(0)
            # never merged: the old bridge keeps its key, the new card has none yet
            assert stack.pg.query("select count(*) from bridges") == [(1,)]
        finally:
            fleet_helpers.stop_process(agent)
            gate.close()
