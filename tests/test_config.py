"""The config file: every mistake a person can make is named by its key, secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from appliance.config import ConfigError, load_config

GOOD = """
[bridge]
id = "store-042"
timezone = "Europe/Lisbon"

[uplink]
url = "https://example.invalid/api/bridge/v1/ingest"
api_key = "s3cret-key"

[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
password = "cam-pass"
collect = ["line_counts", "live_counts"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    sensor = config.sensor("entrance-1")
    assert sensor.timezone == "Europe/Lisbon"  # inherits bridge.timezone
    assert (sensor.interval_s, sensor.backfill_h, sensor.auth) == (300, 168, "auto")
    assert config.uplink.batch_size == 500 and config.uplink.gzip and config.uplink.verify_tls
    assert config.mqtt is None and config.push is None
    assert config.enabled_services() == ["collector", "watchdog", "led"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[[sensors]]", "[[sensors]]\nintervl_s = 60"), "sensors[0].intervl_s: unknown key"),
        (
            ('id = "entrance-1"', 'id = "entrance-1"\ninterval_s = "often"'),
            "sensors[0].interval_s: expected a number, got 'often'",
        ),
        (
            ('id = "entrance-1"', 'id = "entrance-1"\ninterval_s = 0'),
            "sensors[0].interval_s: expected a number > 0",
        ),
        (
            ('url = "http://127.0.0.1:9"', 'url = "192.168.1.100"'),
            "sensors[0].url: expected a URL like http://host[:port]",
        ),  # example, refused
        (
            ('timezone = "Europe/Lisbon"', 'timezone = "Europe/Atlantis"'),
            "bridge.timezone: unknown IANA timezone",
        ),
        (
            ('collect = ["line_counts", "live_counts"]', 'collect = ["people"]'),
            "sensors[0].collect: 'people' is not one of line_counts, region_counts, live_counts",
        ),
        (('api_key = "s3cret-key"', ""), "uplink.api_key: required (or api_key_file)"),
        (
            ('api_key = "s3cret-key"', 'api_key_file = "/nonexistent/key"'),
            "uplink.api_key_file: cannot read /nonexistent/key",
        ),
        (("[bridge]", "[bridg]"), "bridg: unknown key"),
        (
            ("[bridge]", "[led]\npin = 40\n[bridge]"),
            "led.pin: expected a BCM pin number 0..27, got 40",
        ),
        (("[bridge]", '[health]\nlisten = "8080"\n[bridge]'), "health.listen: expected host:port"),
        (("auth", "auth"), None),
    ],
)
def test_each_mistake_is_named_by_its_key(
    tmp_path: Path, change: tuple[str, str], message: str | None
) -> None:
    old, new = change
    if message is None:
        text = GOOD.replace("[[sensors]]", '[[sensors]]\nauth = "kerberos"')
        message = "sensors[0].auth: expected one of auto, basic, digest, got 'kerberos'"
    else:
        assert old in GOOD
        text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('id = "entrance-1"', 'id = "entrance-1"\ninterval_s = -5\ntypo = 1')
    text += '\n[[sensors]]\nid = "entrance-1"\nurl = "http://127.0.0.1:9"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert "sensors[1].id: 'entrance-1' is used by another sensor" in problems


def test_not_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[uplink\nurl = "))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_secret_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("from-a-file\n")
    config = load_config(
        write(tmp_path, GOOD.replace('api_key = "s3cret-key"', 'api_key_file = "api_key"'))
    )
    assert config.uplink.api_key == "from-a-file"


def test_config_check_prints_the_config_with_secrets_masked(tmp_path: Path) -> None:
    done = run_cli("-c", str(write(tmp_path, GOOD)), "config", "check")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["uplink"]["api_key"] == "***"
    assert shown["sensors"][0]["password"] == "***"
    assert "s3cret" not in done.stdout and "cam-pass" not in done.stdout
    assert shown["sensors"][0]["url"] == "http://127.0.0.1:9"


def test_config_check_lists_errors_and_fails(tmp_path: Path) -> None:
    done = run_cli(
        "-c",
        str(write(tmp_path, GOOD.replace("[[sensors]]", "[[sensors]]\nbogus = 1"))),
        "config",
        "check",
    )
    assert done.returncode == 2
    assert "sensors[0].bogus: unknown key" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


def test_left_out_tables_take_exactly_the_model_s_defaults(tmp_path: Path) -> None:
    from appliance.config import AlertsConfig, LedConfig, OutboxConfig, PathsConfig, WatchdogConfig

    config = load_config(write(tmp_path, GOOD))
    assert (config.paths, config.outbox, config.watchdog, config.led, config.alerts) == (
        PathsConfig(),
        OutboxConfig(),
        WatchdogConfig(),
        LedConfig(),
        AlertsConfig(),
    )
    assert config.uplink.heartbeat_s == 60 and config.alerts.ping_s == 60


def test_a_broken_file_still_tells_the_led_its_pin_and_the_services_their_run_dir(
    tmp_path: Path,
) -> None:
    from appliance.config import ConfigWatch, LedConfig

    broken = (
        GOOD.replace("[uplink]", "[uplink]\nurll = 1")
        + '\n[led]\npin = 5\n[paths]\nrun_dir = "/tmp/x"\n'
    )
    watch = ConfigWatch(write(tmp_path, broken))
    assert watch.poll() is None and "uplink.urll: unknown key" in (watch.problems or [])
    assert watch.partial(LedConfig) == LedConfig(pin=5)
    assert watch.paths.run_dir == "/tmp/x"
    watch = ConfigWatch(write(tmp_path, broken.replace("pin = 5", "pin = 99")))
    assert watch.partial(LedConfig) is None


def test_an_alerts_ping_url_is_a_masked_secret(tmp_path: Path) -> None:
    url = "https://hc-ping.example/ping/0f3c-secret-token"
    done = run_cli(
        "-c",
        str(write(tmp_path, GOOD + f'\n[alerts]\nping_url = "{url}"\nping_s = 30\n')),
        "config",
        "check",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["alerts"] == {"ping_url": "***", "ping_s": 30}
    bad = run_cli(
        "-c",
        str(
            write(
                tmp_path,
                GOOD + '\n[alerts]\nping_url = "hc-ping.example/secret-token"\nping_s = 0\n',
            )
        ),
        "config",
        "check",
    )
    assert bad.returncode == 2
    assert "alerts.ping_url: expected a URL like https://host[:port], got '***'" in bad.stderr
    assert "alerts.ping_s: expected a number >= 1, got 0" in bad.stderr
    assert "secret-token" not in bad.stderr + bad.stdout
