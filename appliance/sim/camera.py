"""A simulated Milesight camera: the HTTP API the poller reads, quirks included.

For integrators without hardware, for the demo and for the tests. It serves
``/dataloader.cgi`` (line and region counting CSV) and the live counters like
the real firmware: the ``Tolal`` typo and blanks after commas (or the compact
``Line1-In`` style), CRLF line ends, local wall-clock times, zeros for hours
still to come, about seven days of history, one row for the repeated
fall-back hour and none for the skipped spring-forward hour.

Its counts are a pure function of (seed, wall-clock hour), so ``expected()``
tells exactly what a correct bridge must have delivered. Faults can be switched
on at start or at runtime (``POST /_sim/fault`` with the fault's name):
html, unauthorized, garbage, truncated, slow, reset.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from ..records import NonexistentLocalTime, local_to_utc, now_utc, utc_text

FAULTS = ("none", "html", "unauthorized", "garbage", "truncated", "slow", "reset")
HEADER_STYLES = ("tolal", "compact")
HISTORY = timedelta(days=7)
REALM = "Milesight Network Camera"


class SimCamera:
    """One simulated camera on ``host:port`` (port 0 picks a free one); ``.url`` once started."""

    def __init__(
        self,
        timezone: str = "Europe/Lisbon",
        username: str = "admin",
        password: str = "",
        auth: str = "basic",
        lines: int = 4,
        regions: int = 4,
        header_style: str = "tolal",
        crlf: bool = True,
        latency_ms: float = 0,
        seed: int = 0,
        fault: str = "none",
        clock: Callable[[], datetime] = now_utc,
        host: str = "127.0.0.1",
        port: int = 0,
        announce: bool = False,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
        if header_style not in HEADER_STYLES:
            raise ValueError(f"header_style {header_style!r} is not one of {', '.join(HEADER_STYLES)}")
        self.zone = ZoneInfo(timezone)
        self.username, self.password, self.auth = username, password, auth
        self.lines, self.regions = lines, regions
        self.header_style, self.crlf = header_style, crlf
        self.latency_s = latency_ms / 1000
        self.seed = seed
        self.fault = fault
        self.clock = clock
        self.announce = announce
        self.requests_served = 0
        self._stopping = threading.Event()
        self._nonce = secrets.token_hex(8)
        self._server = _Server((host, port), _handler(self))
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimCamera:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sim-camera", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, name: str) -> None:
        if name not in FAULTS:
            raise ValueError(f"fault {name!r} is not one of {', '.join(FAULTS)}")
        self.fault = name

    # ------------------------------------------------------------ the truth

    def _count(self, kind: str, wall_hour: datetime, slot: str) -> int:
        digest = hashlib.sha256(f"{self.seed}|{kind}|{wall_hour:%Y-%m-%dT%H}|{slot}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % 300

    def _period(self, wall_hour: datetime) -> tuple[datetime, datetime] | None:
        """The UTC period of a wall-clock hour, or None when that hour never happened."""
        try:
            start = local_to_utc(wall_hour, self.zone)
        except NonexistentLocalTime:
            return None
        try:
            end = local_to_utc(wall_hour + timedelta(hours=1), self.zone)
        except NonexistentLocalTime:
            end = start + timedelta(hours=1)
        return start, end

    def _values(self, kind: str, wall_hour: datetime, fraction: float) -> dict[str, Any]:
        def grow(n: int) -> int:
            return int(n * fraction)

        if kind == "line_counts":
            lines = {str(i): {"in": grow(self._count(kind, wall_hour, f"{i}in")),
                              "out": grow(self._count(kind, wall_hour, f"{i}out"))}
                     for i in range(1, self.lines + 1)}
            total = {d: sum(v[d] for v in lines.values()) for d in ("in", "out")}
            return {"total": total, "lines": lines}
        return {"regions": {str(i): grow(self._count(kind, wall_hour, f"r{i}")) for i in range(1, self.regions + 1)}}

    def _rows(self, kind: str, wall_from: datetime, wall_to: datetime) -> list[tuple[datetime, dict[str, Any]]]:
        now = self.clock()
        oldest = now - HISTORY
        hour = wall_from.replace(minute=0, second=0, microsecond=0)
        rows = []
        while hour <= wall_to:
            period = self._period(hour)
            if period and period[1] > oldest:
                start, end = period
                if start > now:
                    fraction = 0.0  # the firmware answers zeros for hours still to come
                else:
                    fraction = min(1.0, (now - start) / (end - start))
                rows.append((hour, self._values(kind, hour, fraction)))
            hour += timedelta(hours=1)
        return rows

    def expected(self, kind: str, start_utc: datetime, end_utc: datetime,
                 settled_s: float = 120) -> dict[str, dict[str, Any]]:
        """What a correct bridge delivers as final for periods starting in [start_utc, end_utc]:
        ``{utc_text(period_start): values}``, for periods that ended ``settled_s`` ago or more."""
        now = self.clock()
        wall = start_utc.astimezone(self.zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        wall_end = end_utc.astimezone(self.zone).replace(tzinfo=None)
        out = {}
        while wall <= wall_end:
            period = self._period(wall)
            if period and start_utc <= period[0] <= end_utc and period[1] + timedelta(seconds=settled_s) <= now \
                    and period[1] > now - HISTORY:
                out[utc_text(period[0])] = self._values(kind, wall, 1.0)
            wall += timedelta(hours=1)
        return out

    # ------------------------------------------------------------ answers

    def csv(self, kind: str, wall_from: datetime, wall_to: datetime) -> str:
        sep = ", " if self.header_style == "tolal" else ","
        if kind == "line_counts":
            names = ["Tolal" if self.header_style == "tolal" else "Total"] + [
                f"Line{i}" for i in range(1, self.lines + 1)]
            dash = " - " if self.header_style == "tolal" else "-"
            header = ["StartTime", "EndTime"] + [f"{n}{dash}{d}" for n in names for d in ("In", "Out", "Sum")]
        else:
            region = "Region" if self.header_style == "tolal" else "region"
            header = ["StartTime", "EndTime"] + [f"{region}{i}" for i in range(1, self.regions + 1)]
        lines = [sep.join(header)]
        for hour, values in self._rows(kind, wall_from, wall_to):
            cells = [f"{hour:%Y/%m/%d %H:%M:%S}", f"{hour + timedelta(seconds=3599):%Y/%m/%d %H:%M:%S}"]
            if kind == "line_counts":
                for v in [values["total"], *values["lines"].values()]:
                    cells += [str(v["in"]), str(v["out"]), str(v["in"] + v["out"])]
            else:
                cells += [str(n) for n in values["regions"].values()]
            lines.append(",".join(cells))
        end = "\r\n" if self.crlf else "\n"
        return end.join(lines) + end

    def live(self) -> str:
        now = self.clock()
        local_now = now.astimezone(self.zone).replace(tzinfo=None)
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = self._rows("line_counts", midnight, local_now)
        people_in = sum(v["total"]["in"] for _, v in rows)
        people_out = sum(v["total"]["out"] for _, v in rows)
        return (f"var current_in_count='{people_in}';var current_out_count='{people_out}';"
                f"var current_sum_count='{people_in + people_out}';"
                f"var current_capacity_count='{max(0, people_in - people_out)}';var current_counter_alarm='0';")

    # ------------------------------------------------------------ auth

    def authorised(self, method: str, header: str | None) -> bool:
        if self.auth == "none":
            return True
        if not header:
            return False
        if self.auth == "basic" and header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:]).decode()
            except ValueError:
                return False
            return secrets.compare_digest(given, f"{self.username}:{self.password}")
        if self.auth == "digest" and header.startswith("Digest "):
            fields = dict(
                (k.strip(), v.strip().strip('"'))
                for k, _, v in (part.partition("=") for part in _split_digest(header[7:]))
            )
            def md5(text: str) -> str:
                return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol's hash

            ha1 = md5(f"{self.username}:{REALM}:{self.password}")
            ha2 = md5(f"{method}:{fields.get('uri', '')}")
            if fields.get("qop"):
                want = md5(f"{ha1}:{fields.get('nonce')}:{fields.get('nc')}:{fields.get('cnonce')}:"
                           f"{fields.get('qop')}:{ha2}")
            else:
                want = md5(f"{ha1}:{fields.get('nonce')}:{ha2}")
            return fields.get("username") == self.username and secrets.compare_digest(
                fields.get("response", ""), want)
        return False

    def challenge(self) -> str:
        if self.auth == "digest":
            return f'Digest realm="{REALM}", qop="auth", nonce="{self._nonce}", algorithm=MD5'
        return f'Basic realm="{REALM}"'


def _split_digest(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _wall_param(params: dict[str, list[str]], name: str) -> datetime | None:
    try:
        return datetime.strptime(params[name][0], "%Y-%m-%d-%H:%M:%S")
    except (KeyError, IndexError, ValueError):
        return None


def _handler(camera: SimCamera) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            if camera.announce:
                print(f"camera {camera.url}: {fmt % args}", flush=True)

        def _send(self, code: int, body: str, content_type: str = "text/plain", headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            name = self.rfile.read(length).decode(errors="replace").strip()
            if urlsplit(self.path).path != "/_sim/fault":
                self._send(404, "not found")
            elif name not in FAULTS:
                self._send(400, f"unknown fault {name!r}; one of {', '.join(FAULTS)}\n")
            else:
                camera.set_fault(name)
                self._send(200, f"fault: {name}\n")

        def do_GET(self) -> None:  # noqa: N802
            camera.requests_served += 1
            if camera.latency_s:
                time.sleep(camera.latency_s)
            fault = camera.fault
            if fault == "slow":
                camera._stopping.wait(3600)
                return
            if fault == "reset":
                self.close_connection = True
                self.connection.close()
                return
            if fault == "unauthorized" or not camera.authorised(self.command, self.headers.get("Authorization")):
                self._send(401, "Unauthorized", headers={"WWW-Authenticate": camera.challenge()})
                return
            if fault == "html":
                self._send(200, "<html><body><h1>Server busy</h1></body></html>", "text/html")
                return
            if fault == "garbage":
                self._send(200, "\x00\x13garbage;;;\n\x7f\x01")
                return
            url = urlsplit(self.path)
            params = parse_qs(url.query)
            if url.path == "/cgi-bin/operator/operator.cgi" and params.get("action") == ["get.vca.alarmstatus"]:
                self._send(200, camera.live())
                return
            kinds = {"vcalogcsv": "line_counts", "regionalcountlogcsv": "region_counts"}
            kind = kinds.get((params.get("dw") or [""])[0])
            start, end = _wall_param(params, "time_start"), _wall_param(params, "time_end")
            if url.path != "/dataloader.cgi" or not kind or not start or not end:
                self._send(404, "<html><body>404 Not Found</body></html>", "text/html")
                return
            body = camera.csv(kind, start, end)
            if fault == "truncated":
                body = body[: max(len(body.splitlines()[0]) + 20, len(body) // 2)]
            self._send(200, body, "text/csv")

    return Handler


def _serve(args: argparse.Namespace) -> int:
    camera = SimCamera(
        timezone=args.timezone, username=args.username, password=args.password, auth=args.auth,
        lines=args.lines, regions=args.regions, header_style=args.header_style, latency_ms=args.latency_ms,
        seed=args.seed, fault=args.fault, host=args.host, port=args.port, announce=True,
    )
    camera.start()
    print(f"simulated Milesight camera on {camera.url} ({args.timezone}, auth {args.auth}); Ctrl-C stops",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        camera.stop()
    return 0


def add_command(sim_commands: argparse._SubParsersAction) -> None:
    cam = sim_commands.add_parser("camera", help="serve a simulated Milesight camera")
    cam.add_argument("--host", default="127.0.0.1")
    cam.add_argument("--port", type=int, default=8081)
    cam.add_argument("--timezone", default="Europe/Lisbon", help="the camera's wall-clock zone")
    cam.add_argument("--username", default="admin")
    cam.add_argument("--password", default="")
    cam.add_argument("--auth", choices=("basic", "digest", "none"), default="basic")
    cam.add_argument("--lines", type=int, choices=range(1, 5), default=4)
    cam.add_argument("--regions", type=int, choices=range(1, 5), default=4)
    cam.add_argument("--header-style", choices=HEADER_STYLES, default="tolal")
    cam.add_argument("--latency-ms", type=float, default=0)
    cam.add_argument("--fault", choices=FAULTS, default="none")
    cam.add_argument("--seed", type=int, default=0)
    cam.set_defaults(func=_serve)
