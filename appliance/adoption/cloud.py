"""The fleet agent's requests to the cloud: ``POST /enroll``, ``GET /config`` and ``POST /scan``.

Each answer is read within a deadline and a size cap (appliance/http_client.py),
and told apart as the contract says (docs/ingest-contract.md, "Adoption"): a
refusal names its status and the cloud's ``error``; an unreachable cloud is
``status None`` with the reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..config_keys import mask_urls
from ..device_text import printable

ENROLL_PATH = "/api/bridge/v1/enroll"
CONFIG_PATH = "/api/bridge/v1/config"
SCAN_PATH = "/api/bridge/v1/scan"
DEADLINE_S = 15.0
MAX_ANSWER_BYTES = 1_000_000  # a config is a few KB; a store's 200 sensors about 60 KB


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (unreachable, timed out)
    body: Any = None
    headers: Any = None
    error: str = ""


class Cloud:
    """The fleet's cloud app at ``url`` (its origin)."""

    def __init__(self, url: str, verify_tls: bool = True) -> None:
        self.url = url.rstrip("/")
        self.verify_tls = verify_tls
        self._client: Any = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def enroll(self, token: str, body: dict[str, Any]) -> Answer:
        return self._request("POST", ENROLL_PATH, token, json_body=body)

    def config(self, credential: str, bridge_id: str, running: int | None) -> Answer:
        headers = {"X-Bridge-Id": bridge_id}
        if running is not None:
            headers["If-None-Match"] = f'"{running}"'
        return self._request("GET", CONFIG_PATH, credential, headers=headers)

    def scan_report(self, credential: str, body: dict[str, Any]) -> Answer:
        return self._request("POST", SCAN_PATH, credential, json_body=body)

    def _request(
        self,
        method: str,
        path: str,
        bearer: str,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        import json

        import requests

        from ..http_client import HttpClient, Late, TooLarge

        if self._client is None:
            self._client = HttpClient(
                {"User-Agent": f"sensor-bridge/{__version__}", "Content-Type": "application/json"}
            )
        sent = {"Authorization": f"Bearer {bearer}", **(headers or {})}
        try:
            got = self._client.request(
                method,
                self.url + path,
                data=json.dumps(json_body).encode() if json_body is not None else None,
                headers=sent,
                deadline_s=DEADLINE_S,
                max_bytes=MAX_ANSWER_BYTES,
                verify=self.verify_tls,
                allow_redirects=False,
            )
        except (Late, requests.Timeout):
            return Answer(None, error=f"no answer from {self.url} within {DEADLINE_S:g} s")
        except TooLarge:
            return Answer(None, error="answer too large: not the fleet's cloud app")
        except requests.RequestException as exc:
            why = str(exc).replace(bearer, "***")
            return Answer(None, error=printable(mask_urls(f"cannot reach {self.url}: {why}"), 300))
        try:
            body = got.json() if got.body else None
        except ValueError:
            body = None
        reason = body.get("error") if isinstance(body, dict) else None
        error = f"HTTP {got.status_code}" + (f": {reason}" if isinstance(reason, str) else "")
        return Answer(
            got.status_code, body, got.headers, printable(error.replace(bearer, "***"), 300)
        )
