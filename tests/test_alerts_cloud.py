"""Cloud alerts against a real PostgreSQL and the real routes, with a fake
Telegram Bot API and a fake webhook receiver, all on loopback.

"Time" is driven by writing heartbeat times into SQL, never by sleeping: a
bridge that went silent 11 minutes ago is an UPDATE of last_heartbeat_at.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cloud_helpers import (
    CLOUD,
    CloudApi,
    CloudStack,
    NextServer,
    make_heartbeat,
    sql_literal,
    utc_text,
)

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30
BOT_TOKEN = "123456:telegram-test-token"
STATUS_TOKEN = "status-token-0123456789abcdef"
BRIDGES_TOOL = CLOUD / "bin" / "bridges"


class FakeReceiver:
    """A loopback HTTP server that records every POST and answers from a script (default 200)."""

    def __init__(self, ok_body: dict[str, Any]) -> None:
        self.ok_body = ok_body
        self.received: list[dict[str, Any]] = []
        self.answers: deque[tuple[int, dict[str, Any]]] = deque()
        self.delay_s = 0.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(fake.delay_s)
                with fake.lock:
                    status, answer = fake.answers.popleft() if fake.answers else (200, fake.ok_body)
                    if status == 200:
                        fake.received.append({"path": self.path, **body})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        with self.lock:
            return [r["text"] for r in self.received]

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.answers.clear()
        self.delay_s = 0.0


class Alerting:
    """The route server with alert channels pointed at the fakes, and helpers to drive it."""

    def __init__(
        self, stack: CloudStack, telegram: FakeReceiver, webhook: FakeReceiver, server: NextServer
    ):
        self.stack, self.telegram, self.webhook, self.server = stack, telegram, webhook, server

    def cron(self) -> requests.Response:
        return requests.get(
            f"{self.server.base_url}/api/bridge/v1/cron/alerts",
            headers={"Authorization": f"Bearer {self.stack.cron_secret}"},
            timeout=TIMEOUT,
        )

    def status(self, token: str = STATUS_TOKEN) -> requests.Response:
        return requests.get(f"{self.server.base_url}/api/bridge/v1/status/{token}", timeout=TIMEOUT)

    def bridge(
        self, label: str = "Lisbon, Rua Augusta", timezone: str | None = "Europe/Lisbon"
    ) -> CloudApi:
        api = self.stack.api()
        api.heartbeat_url = f"{self.server.base_url}/api/bridge/v1/heartbeat"
        self.sql(
            f"update bridges set label = {sql_literal(label)}, timezone = "
            f"{sql_literal(timezone) if timezone else 'null'} where id = {sql_literal(api.bridge_id)}"
        )
        return api

    def heartbeat(self, api: CloudApi, **changes: Any) -> None:
        body = make_heartbeat(api.bridge_id)
        body.update(changes)
        answer = requests.post(
            api.heartbeat_url,
            json=body,
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {api.api_key}", "User-Agent": "sensor-bridge/0.1.0"},
        )
        assert answer.status_code == 200, answer.text

    def silence(self, api: CloudApi, minutes: float) -> None:
        self.sql(
            f"update bridges set last_heartbeat_at = now() - interval '{minutes} minutes' "
            f"where id = {sql_literal(api.bridge_id)}"
        )

    def sql(self, statement: str) -> None:
        self.stack.pg.psql(statement)

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(BRIDGES_TOOL), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "DATABASE_URL": self.stack.pg.url(),
                "PATH": f"{self.stack.pg.bindir}:{os.environ['PATH']}",
            },
        )


@pytest.fixture(scope="module")
def alerting_server(
    cloud_stack: CloudStack,
) -> Iterator[tuple[FakeReceiver, FakeReceiver, NextServer]]:
    telegram = FakeReceiver({"ok": True, "result": {"message_id": 1}})
    webhook = FakeReceiver({"ok": True})
    server = cloud_stack.start_server(
        {
            "ALERT_TELEGRAM_API": telegram.url,
            "ALERT_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "ALERT_TELEGRAM_CHAT_ID": "-1001",
            "ALERT_WEBHOOK_URL": f"{webhook.url}/hook",
            "STATUS_TOKEN": STATUS_TOKEN,
        }
    )
    try:
        yield telegram, webhook, server
    finally:
        server.stop()
        telegram.server.shutdown()
        webhook.server.shutdown()


@pytest.fixture
def alerts(
    cloud_stack: CloudStack, alerting_server: tuple[FakeReceiver, FakeReceiver, NextServer]
) -> Alerting:
    cloud_stack.reset()
    cloud_stack.pg.psql("truncate public.bridge_alert_channels;")
    telegram, webhook, server = alerting_server
    telegram.reset()
    webhook.reset()
    return Alerting(cloud_stack, telegram, webhook, server)


def test_silent_bridge_one_message_per_channel_then_one_recovery(alerts: Alerting) -> None:
    api = alerts.bridge()
    alerts.heartbeat(api)
    assert alerts.cron().status_code == 200
    assert alerts.telegram.texts() == [] and alerts.webhook.texts() == []

    alerts.silence(api, 11)
    assert alerts.cron().json()["open_incidents"] == 1
    [opened] = alerts.telegram.texts()
    assert "Lisbon, Rua Augusta" in opened and api.bridge_id in opened and "no heartbeat" in opened
    assert "sensor-bridge doctor" in opened and "cloud API reachable" in opened
    assert "GMT" in opened or "WE" in opened  # the store's zone, not bare UTC
    assert alerts.webhook.received[0]["path"] == "/hook"
    [incident] = alerts.webhook.received[0]["incidents"]
    assert incident["event"] == "opened" and incident["what"] == "bridge_silent"
    assert incident["bridge_id"] == api.bridge_id and opened == alerts.webhook.texts()[0]
    assert BOT_TOKEN in alerts.telegram.received[0]["path"]

    for _ in range(10):
        assert alerts.cron().status_code == 200
    assert len(alerts.telegram.texts()) == 1 and len(alerts.webhook.texts()) == 1

    alerts.heartbeat(api)
    alerts.cron()
    alerts.cron()
    assert len(alerts.telegram.texts()) == 2 and len(alerts.webhook.texts()) == 2
    recovered = alerts.telegram.texts()[1]
    assert "Recovered" in recovered and "heartbeats again after 11 min" in recovered, recovered
    assert alerts.webhook.received[1]["incidents"][0]["duration_s"] >= 11 * 60
    rows = alerts.stack.pg.query(
        "select notified_at is not null as a, closed_at is not null as b, "
        "close_notified_at is not null as c from bridge_alert_incidents"
    )
    assert rows == [(True, True, True)]


def test_two_cron_runs_at_once_send_one_message(alerts: Alerting) -> None:
    api = alerts.bridge()
    alerts.silence(api, 30)
    alerts.telegram.delay_s = 1.0  # the first run still sends while the second arrives
    answers: list[dict[str, Any]] = []
    runs = [threading.Thread(target=lambda: answers.append(alerts.cron().json())) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(alerts.telegram.texts()) == 1 and len(alerts.webhook.texts()) == 1
    assert sum(1 for a in answers if "skipped" in a) == 1, answers


@pytest.mark.parametrize(
    "failure",
    [
        (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 30",
                "parameters": {"retry_after": 30},
            },
        ),
    ],
    ids=["500", "429"],
)
def test_failed_telegram_send_is_delivered_later_once(
    alerts: Alerting, failure: tuple[int, dict[str, Any]]
) -> None:
    api = alerts.bridge()
    alerts.silence(api, 15)
    alerts.telegram.answers.append(failure)
    answer = alerts.cron()
    assert (
        answer.status_code == 502
        and "HTTP " + str(failure[0]) in answer.json()["channels"]["telegram"]["error"]
    )
    assert BOT_TOKEN not in answer.text and BOT_TOKEN not in alerts.server.output()
    assert (
        alerts.telegram.texts() == [] and len(alerts.webhook.texts()) == 1
    )  # the webhook is not held up

    alerts.cron()
    if failure[0] == 429:  # retry_after is respected: nothing is tried before it passes
        assert alerts.telegram.texts() == []
        alerts.sql("update bridge_alert_channels set hold_until = now() - interval '1 second'")
        alerts.cron()
    assert len(alerts.telegram.texts()) == 1 and api.bridge_id in alerts.telegram.texts()[0]
    for _ in range(3):
        alerts.cron()
    assert len(alerts.telegram.texts()) == 1 and len(alerts.webhook.texts()) == 1


def test_forty_silent_bridges_make_one_message(alerts: Alerting) -> None:
    ids = [f"store-{n:03d}" for n in range(40)]
    alerts.sql(
        "insert into bridges (id, api_key_sha256, label, created_at, last_heartbeat_at) select id, "
        "repeat('0', 64), 'Store ' || id, now() - interval '1 day', now() - interval '20 minutes' "
        f"from unnest(array[{', '.join(sql_literal(i) for i in ids)}]) id"
    )
    alerts.cron()
    [text] = alerts.telegram.texts()
    assert all(f"({i})" in text for i in ids) and "(40)" in text
    assert len(alerts.webhook.received) == 1 and len(alerts.webhook.received[0]["incidents"]) == 40


def _failing_sensor(sensor_id: str) -> dict[str, Any]:
    long_ago = utc_text(datetime.now(UTC) - timedelta(hours=2))
    return {
        "id": sensor_id,
        "state": "failing",
        "last_success": long_ago,
        "last_error": "line_counts: timed out",
    }


def test_retired_sensor_never_alerts_and_leaves_the_stale_check(alerts: Alerting) -> None:
    api = alerts.bridge()
    retire = alerts.tool("retire-sensor", api.bridge_id, "cam-test-bench")
    assert retire.returncode == 0 and "retired" in retire.stderr
    old = datetime.now(UTC) - timedelta(hours=6)
    for sensor in ("cam-test-bench", "cam-till"):  # both without new counts for 6 h; one retired
        alerts.sql(
            "insert into bridge_sensors (bridge_id, sensor_id, kind, first_seen_at, last_final_period_end) "
            f"values ({sql_literal(api.bridge_id)}, '{sensor}', 'line_counts', '{utc_text(old)}', "
            f"'{utc_text(old)}')"
        )
    alerts.heartbeat(
        api,
        state="degraded",
        sensors=[_failing_sensor("cam-test-bench"), _failing_sensor("cam-entrance")],
    )
    alerts.cron()
    [text] = alerts.telegram.texts()
    assert (
        "cam-entrance" in text and "Camera not answering" in text and "cam-test-bench" not in text
    )
    assert "No new counts for over 3 h (1):\n• sensor cam-till" in text
    stale = requests.get(
        api.stale_url,
        headers={"Authorization": f"Bearer {alerts.stack.cron_secret}"},
        timeout=TIMEOUT,
    )
    assert [s["sensor_id"] for s in stale.json()["stale_sensors"]] == ["cam-till"], stale.text
    listing = alerts.tool("sensors", api.bridge_id)
    assert "cam-test-bench" in listing.stdout and "retired" in listing.stdout


def test_status_endpoint_flips_and_refuses_a_wrong_token(alerts: Alerting) -> None:
    api = alerts.bridge()
    alerts.heartbeat(api)
    assert alerts.status().status_code == 200
    alerts.silence(api, 12)
    down = alerts.status()
    assert down.status_code == 503 and api.bridge_id in down.text and "no heartbeat" in down.text
    assert api.api_key not in down.text
    alerts.heartbeat(api)
    assert alerts.status().status_code == 200
    assert alerts.status("wrong-token-0123456789abcdef").status_code == 403
    assert alerts.cron().status_code == 200  # no incident was left open by the status checks


def test_error_state_and_dropped_readings_are_told_with_what_to_try(alerts: Alerting) -> None:
    api = alerts.bridge(label="", timezone=None)
    alerts.heartbeat(api)
    alerts.heartbeat(
        api,
        state="error",
        outbox={"pending": 9000, "oldest_pending_age_s": 7200, "dead_letter": 0, "dropped": 120},
    )
    alerts.cron()
    [text] = alerts.telegram.texts()
    assert (
        "Bridge reports an error" in text and "Readings dropped" in text and "outbox.max_mb" in text
    )
    assert "UTC" in text
    kinds = sorted(i["what"] for i in alerts.webhook.received[0]["incidents"])
    assert kinds == ["bridge_error", "readings_dropped"]


def test_cron_refuses_without_the_secret(alerts: Alerting) -> None:
    answer = requests.get(f"{alerts.server.base_url}/api/bridge/v1/cron/alerts", timeout=TIMEOUT)
    assert answer.status_code == 401


def test_bridges_tool_lists_retires_and_rotates(alerts: Alerting) -> None:
    api = alerts.bridge()
    assert api.bridge_id in alerts.tool("list").stdout
    assert alerts.tool("set-timezone", api.bridge_id, "Mars/Olympus").returncode == 2
    assert alerts.tool("retire", api.bridge_id).returncode == 0
    alerts.silence(api, 60)
    alerts.cron()
    assert alerts.telegram.texts() == []
    assert "retired" in alerts.tool("list").stdout
    rotated = alerts.tool("rotate", api.bridge_id, "--key-only")
    assert rotated.returncode == 0 and rotated.stdout.startswith("sbk_")
    assert alerts.stack.pg.query(
        f"select disabled_at from bridges where id = {sql_literal(api.bridge_id)}"
    ) == [(None,)]


def test_camera_chosen_text_arrives_quoted_not_as_a_mention_or_a_link(alerts: Alerting) -> None:
    # Issue 19: a camera's HTTP reason phrase becomes the sensor's last_error, then the webhook's
    # text; Slack and Mattermost read <!channel> as a mention and <url|label> as a disguised link.
    api = alerts.bridge()
    alerts.heartbeat(api)
    hostile = (
        "HTTP 401 <!channel> <https://evil.example/login|log in again> @everyone "
        "[log in](https://evil.example/login) a&b\u202e\n" + "x" * 5000
    )
    failing = _failing_sensor("cam-entrance") | {"last_error": hostile}
    alerts.heartbeat(api, state="degraded", sensors=[failing])
    alerts.cron()

    [hook] = alerts.webhook.received
    text = hook["text"]
    assert "Camera not answering" in text and "cam-entrance" in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert "&lt;https://evil.example/login|log in again&gt;" in text
    assert "<https://" not in text and "<" not in text and ">" not in text
    assert "a&amp;b" in text
    assert "@everyone" not in text and "](https://" not in text  # broken by an invisible space
    assert "\u202e" not in text and "x" * 400 not in text  # printable, and bounded
    assert hook["allowed_mentions"] == {"parse": []}  # Discord: no ping whatever the text says
    [incident] = hook["incidents"]
    assert len(incident["detail"]) <= 300 and "\n" not in incident["detail"]

    [telegram] = alerts.telegram.received  # plain text (no parse_mode): nothing is markup there
    assert "parse_mode" not in telegram
    assert "<!channel>" in telegram["text"] and "x" * 400 not in telegram["text"]
