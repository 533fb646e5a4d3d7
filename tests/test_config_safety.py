"""A config nobody should have written is refused with the fix, and never costs a secret or the Pi.

Credentials in a URL are refused; a secret in a URL's query string is accepted but never
printed (config check, doctor, the collector's log, the boot partition's files). A file
too large, too many sensors, a link to another file on the boot partition and link-local
addresses are refused, each naming what is wrong.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CLI,
    REPO,
    base_tables,
    closed_port_url,
    free_port,
    run_cli,
    wait_for,
    write_config,
)

from appliance.boot_config import ERROR_NAME
from appliance.config import ConfigError, parse_config

URL_PASSWORD = "Hunter2-url-pw"
QUERY_SECRET = "QS3cret-token"


def sensor(url: str, **extra: Any) -> dict[str, Any]:
    return {"id": "entrance-1", "url": url, "password": "cam-pw", **extra}


def everything_printed(proc: subprocess.CompletedProcess[str], folder: Path) -> str:
    """What a person can see: the command's output and every file it left in ``folder``."""
    files = [
        p.read_text(errors="replace")
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    ]
    return "\n".join([proc.stdout, proc.stderr, *files])


def boot_import(
    boot_file: Path, target: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "config", "import", "--from", str(boot_file), "--to", str(target), timeout=timeout
    )


# ---------------------------------------------------------------- credentials in URLs


@pytest.mark.parametrize(
    ("where", "fix"),
    [
        ("sensors[0].url", "put the user and password in username/password"),
        ("uplink.url", "the API key goes in api_key"),
        ("uplink.heartbeat_url", "the API key goes in api_key"),
    ],
)
def test_config_check_refuses_a_url_with_credentials_and_never_prints_them(
    tmp_path: Path, where: str, fix: str
) -> None:
    tables = base_tables(tmp_path, closed_port_url())
    tables["sensors"] = [sensor(closed_port_url())]
    leaky = f"http://admin:{URL_PASSWORD}@127.0.0.1:{free_port()}"
    if where == "sensors[0].url":
        tables["sensors"][0]["url"] = leaky
    else:
        tables["uplink"][where.split(".")[1]] = leaky + "/ingest"
    done = run_cli("-c", str(write_config(tmp_path / "config.toml", tables)), "config", "check")
    assert done.returncode == 2, done.stdout
    assert f"{where}: holds credentials" in done.stderr and fix in done.stderr, done.stderr
    assert URL_PASSWORD not in done.stdout + done.stderr


def test_the_boot_import_refuses_credentials_in_a_url_and_leaves_them_nowhere(
    tmp_path: Path,
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    tables = base_tables(tmp_path, f"https://bridge:{URL_PASSWORD}@example.invalid/ingest")
    source = write_config(boot / "sensor-bridge.toml", tables)
    target = tmp_path / "etc" / "config.toml"

    done = boot_import(source, target)

    assert done.returncode == 1
    error = (boot / ERROR_NAME).read_text()
    assert "uplink.url: holds credentials (https://***@example.invalid/ingest)" in error
    assert "the API key goes in api_key" in error
    assert not target.exists()
    source.unlink()  # the person's own file holds it, of course; nothing else may
    assert URL_PASSWORD not in everything_printed(done, tmp_path)


# ---------------------------------------------------------------- secrets in query strings


@pytest.fixture
def answers_401() -> Iterator[str]:
    """A loopback cloud API that refuses every key: doctor then prints the URL it reached."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_query_string_secret_is_masked_by_config_check_and_doctor(
    tmp_path: Path, answers_401: str
) -> None:
    tables = base_tables(tmp_path, f"{answers_401}/ingest?code={QUERY_SECRET}")
    tables["uplink"]["heartbeat_url"] = f"{answers_401}/heartbeat?token={QUERY_SECRET}"
    config = write_config(tmp_path / "config.toml", tables)

    check = run_cli("-c", str(config), "config", "check")
    assert check.returncode == 0, check.stderr
    assert f"{answers_401}/ingest?code=***" in check.stdout
    assert QUERY_SECRET not in check.stdout + check.stderr

    doctor = run_cli("-c", str(config), "doctor")
    assert f"PASS cloud API reachable: {answers_401}/ingest?code=***" in doctor.stdout, (
        doctor.stdout
    )
    assert QUERY_SECRET not in doctor.stdout + doctor.stderr


def test_the_collector_log_masks_a_query_string_secret(tmp_path: Path) -> None:
    tables = base_tables(tmp_path, f"{closed_port_url()}/ingest?code={QUERY_SECRET}")
    tables["uplink"]["heartbeat_url"] = f"{closed_port_url()}/heartbeat?token={QUERY_SECRET}"
    config = write_config(tmp_path / "config.toml", tables)
    log = tmp_path / "collector.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "-c", str(config), "run"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: "heartbeat to" in log.read_text(),
            timeout=30,
            what="the failed heartbeat's log line",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "delivering to http://127.0.0.1:" in text and "/ingest?code=***" in text, text
    assert QUERY_SECRET not in text


def test_the_boot_import_keeps_a_query_string_secret_off_the_card(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    url = f"https://example.invalid/ingest?code={QUERY_SECRET}"
    source = write_config(boot / "sensor-bridge.toml", base_tables(tmp_path, url))
    target = tmp_path / "etc" / "config.toml"

    done = boot_import(source, target)

    assert done.returncode == 0, done.stderr
    assert f'url = "{url}"' in target.read_text()  # the bridge needs it
    retired = boot / "sensor-bridge.toml.imported"
    assert QUERY_SECRET not in everything_printed(done, boot)
    assert "# url = (removed after import" in retired.read_text()

    retired.rename(source)  # saved back as it is: refused, not installed without the URL
    again = boot_import(source, target)
    assert again.returncode == 1
    assert 'replace this line with the real value (url = "...")' in (boot / ERROR_NAME).read_text()
    assert f'url = "{url}"' in target.read_text()


# ---------------------------------------------------------------- size and count limits


PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stderr)
print("peak_kb", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "rc", done.returncode)
"""


def test_a_100_mb_boot_config_is_refused_quickly_with_bounded_memory(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    source = write_config(boot / "sensor-bridge.toml", base_tables(tmp_path, closed_port_url()))
    with source.open("r+b") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: costs no disk, reads as 100 MB
    target = tmp_path / "etc" / "config.toml"

    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_RSS,
            *CLI,
            "config",
            "import",
            "--from",
            str(source),
            "--to",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    took = time.monotonic() - started

    words = done.stdout.split()
    peak_mb = int(words[words.index("peak_kb") + 1]) / 1024
    assert words[-1] == "1", done.stdout
    assert "at most 256 KB" in (boot / ERROR_NAME).read_text()
    assert not target.exists()
    assert peak_mb < 100, f"import peaked at {peak_mb:.0f} MB"
    assert took < 20, f"took {took:.1f} s"

    check = run_cli("-c", str(source), "config", "check")
    assert (
        check.returncode == 2
        and "the file is 104857600 bytes; at most 256 KB is read" in check.stderr
    )


def test_10000_sensors_are_refused_naming_the_limit(tmp_path: Path) -> None:
    raw = base_tables(tmp_path, closed_port_url())
    raw["sensors"] = [
        sensor(f"http://127.0.0.1:{9000 + i % 50}", id=f"cam-{i}") for i in range(10_000)
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.problems == [
        "sensors: 10000 configured, a bridge serves at most 200; split them over more bridges"
    ]

    raw["sensors"] = raw["sensors"][:200]
    assert len(parse_config(raw).sensors) == 200

    raw["sensors"] = raw["sensors"][:201] + [sensor(closed_port_url(), id="one-more")]
    done = run_cli("-c", str(write_config(tmp_path / "config.toml", raw)), "config", "check")
    assert (
        done.returncode == 2
        and "sensors: 201 configured, a bridge serves at most 200" in done.stderr
    )


def test_too_many_mqtt_devices_are_refused_naming_the_limit(tmp_path: Path) -> None:
    raw: dict[str, Any] = base_tables(tmp_path, closed_port_url())
    raw["mqtt"] = {"devices": [{"sensor_id": f"desk-{i}", "serial": f"SN{i}"} for i in range(501)]}
    with pytest.raises(
        ConfigError, match=r"mqtt.devices: 501 configured, a bridge serves at most 500"
    ):
        parse_config(raw)


def test_an_oversized_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k" * 10_000)
    raw = base_tables(tmp_path, closed_port_url())
    del raw["uplink"]["api_key"]
    raw["uplink"]["api_key_file"] = str(tmp_path / "key")
    with pytest.raises(ConfigError, match=r"uplink.api_key_file: cannot read .*at most 4 KB"):
        parse_config(raw)


# ---------------------------------------------------------------- what the boot file really is


SHADOW = "root:$6$SHADOWHASH$abcdef:19000:0:99999:7:::\n"


@pytest.mark.parametrize(
    "kind", ["link to /etc/shadow", "link to a valid config", "fifo", "folder"]
)
def test_a_boot_config_that_is_not_a_plain_file_is_refused_unread(
    tmp_path: Path, kind: str
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = boot / "sensor-bridge.toml"
    if kind == "link to /etc/shadow":
        (elsewhere / "shadow").write_text(SHADOW)
        source.symlink_to(elsewhere / "shadow")
    elif kind == "link to a valid config":
        source.symlink_to(
            write_config(
                elsewhere / "c.toml", base_tables(tmp_path, closed_port_url(), "SHADOWHASH")
            )
        )
    elif kind == "fifo":
        os.mkfifo(source)  # reading it would wait for a writer forever
    else:
        source.mkdir()
    target = tmp_path / "etc" / "config.toml"

    done = boot_import(source, target, timeout=20)

    assert done.returncode == 1, done.stdout + done.stderr
    error = (boot / ERROR_NAME).read_text()
    expected = "the file is a symbolic link" if kind.startswith("link") else "not a regular file"
    assert expected in error and expected in done.stderr
    assert not target.exists()
    assert "SHADOWHASH" not in done.stdout + done.stderr + error


# ---------------------------------------------------------------- link-local addresses


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.10.20", "[fe80::1]"])
def test_a_link_local_sensor_address_is_refused(tmp_path: Path, host: str) -> None:
    raw = base_tables(tmp_path, closed_port_url())
    raw["sensors"] = [sensor(f"http://{host}/")]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.problems == [
        f"sensors[0].url: {host.strip('[]')} is a link-local address (169.254.169.254 is a cloud metadata "
        "service), never a camera or the cloud API; give the device a fixed address on the store network"
    ]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "localhost", "192.0.2.10", "cam-1.store.invalid"]
)
def test_loopback_and_store_addresses_stay_allowed(tmp_path: Path, host: str) -> None:
    raw = base_tables(tmp_path, closed_port_url())
    raw["sensors"] = [sensor(f"http://{host}:8080")]  # never contacted: only checked
    assert parse_config(raw).sensors[0].url == f"http://{host}:8080"
