"""A simulated Milesight camera: the HTTP API the poller reads, quirks included.

For integrators without hardware, for the demo and for the tests. It serves
``/dataloader.cgi`` (line and region counting CSV) and the live counters like
the real firmware: local wall-clock times, zeros for hours still to come,
about seven days of history, one row for the repeated fall-back hour (holding
both real hours) and none for the skipped spring-forward hour. Firmware
variants (``header_style``):

- ``tolal``: the verbatim firmware header, ``Tolal - In`` typo and blanks
  after commas, always Line1..Line4 and Region1..Region4 (unused ones zero);
  live counters run together on one line;
- ``fewer``: ``Total - In``, only the configured lines, ``REGION1``; live
  counters one per line;
- ``compact``: ``Total-In``/``Line1-In`` without blanks, only the configured
  lines, ``region1``; live counters one per line.

Its counts are a pure function of (seed, wall-clock hour), and the current
hour grows with the clock, so ``expected()`` tells exactly what a correct
bridge must have delivered. Every answer's Date header is the camera's own
clock, so a bridge can check its clock against it. Faults can be switched on
at start, with ``set_fault()`` or over HTTP while it runs (``POST
/_sim/fault``, body = the fault's name): html, unauthorized, garbage,
truncated, slow, reset.

Identity (``serial``, ``model``, ``firmware``, ``mac``): the system
information call (``/cgi-bin/admin/admin.cgi?action=get.system.information
&format=json``) answers ``snCode``, ``model``, ``firmwareVersion`` and
``macAddress``, behind the camera's password like every call. A camera built
with ``activated=False`` is one fresh from the factory on recent firmware
("Inactive": no password set), so it answers every call without one.
appliance/sim/lan.py makes it answer WS-Discovery and mDNS too.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from urllib.request import parse_http_list, parse_keqv_list
from zoneinfo import ZoneInfo

from ..clock import now_utc, utc_text
from ..records import NonexistentLocalTime, local_to_utc
from ..service import Background, run_service

FAULTS = ("none", "html", "unauthorized", "garbage", "truncated", "slow", "reset")
HEADER_STYLES = ("tolal", "fewer", "compact")
HISTORY = timedelta(days=7)
REALM = "Milesight Network Camera"
INFO_PATH = "/cgi-bin/admin/admin.cgi"  # ?action=get.system.information&format=json
SLOW_S = 3600  # "slow" outwaits any sane timeout; stop() still ends it at once
FINAL_GRACE_S = 120  # as the poller's: a period is final this long after its end
LOGIN_PAGE = b"<html><head><title>Milesight Network Camera</title></head><body></body></html>"
BUSY_PAGE = b"<html><head><title>Server busy</title></head><body><h1>Server busy, try later</h1></body></html>"
GARBAGE = (
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x57\x28\xcf\x2f\xca\x49\x01\x00"
)


class SimCamera:
    """One simulated camera on ``host:port`` (port 0 picks a free one); ``.url`` right away.

    ``clock`` (aware UTC now) lets a test put the camera on any day, DST days
    included. ``requests_served`` counts camera API requests, ``answers`` their
    status codes, ``paths`` them per URL path.
    """

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
        serial: str = "6C0123456789",
        model: str = "MS-C2964-RFLPC",
        firmware: str = "45.8.0.3-r4",
        mac: str = "",
        activated: bool = True,
    ) -> None:
        if header_style not in HEADER_STYLES:
            raise ValueError(
                f"header_style {header_style!r} is not one of {', '.join(HEADER_STYLES)}"
            )
        if auth not in ("basic", "digest", "none"):
            raise ValueError(f"auth {auth!r} is not one of basic, digest, none")
        if not (1 <= lines <= 4 and 1 <= regions <= 4):
            raise ValueError("lines and regions must be 1..4")
        self.zone = ZoneInfo(timezone)
        self.username, self.password, self.auth = username, password, auth
        self.lines, self.regions = lines, regions
        self.header_style, self.crlf = header_style, crlf
        self.latency_s = latency_ms / 1000
        self.seed = seed
        self.fault = "none"
        self.set_fault(fault)
        self.clock = clock
        self.announce = announce
        self.serial, self.model, self.firmware, self.mac = serial, model, firmware, mac
        self.activated = activated
        self.requests_served = 0
        self.answers: Counter[int] = Counter()
        self.paths: Counter[str] = Counter()  # requests per URL path
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._nonce = secrets.token_hex(16)
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _handler(self))
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimCamera:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sim-camera", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at once: hanging "slow" answers end and kept-alive connections are closed."""
        self._stopping.set()
        if self._thread:
            closer = threading.Thread(target=self._server.shutdown, daemon=True)
            closer.start()
            while closer.is_alive():  # wake serve_forever instead of waiting out its poll
                self._poke()
                closer.join(0.05)
            self._thread = None
        self._server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _poke(self) -> None:
        host, port = self._server.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        try:
            socket.create_connection((host, port), timeout=0.2).close()
        except OSError:
            pass

    def __enter__(self) -> SimCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, name: str) -> None:
        """Misbehave from the next request on (``none`` heals it)."""
        if name not in FAULTS:
            raise ValueError(f"fault {name!r} is not one of {', '.join(FAULTS)}")
        self.fault = name

    # ------------------------------------------------------------ the truth

    def _count(self, kind: str, wall_hour: datetime, slot: str) -> int:
        digest = hashlib.sha256(
            f"{self.seed}|{kind}|{wall_hour:%Y-%m-%dT%H}|{slot}".encode()
        ).digest()
        return int.from_bytes(digest[:4], "big") % 300

    def _period(self, wall_hour: datetime) -> tuple[datetime, datetime] | None:
        """The UTC period of a wall-clock hour's row, or None when that hour never happened."""
        try:
            start = local_to_utc(wall_hour, self.zone)
            end = local_to_utc(wall_hour + timedelta(seconds=3599), self.zone, later=True)
        except NonexistentLocalTime:
            return None
        return start, end + timedelta(seconds=1)

    def _shown(self, configured: int) -> int:
        """How many lines (regions) the CSV has: the verbatim firmware always shows four."""
        return 4 if self.header_style == "tolal" else configured

    def _values(self, kind: str, wall_hour: datetime, fraction: float) -> dict[str, Any]:
        def grow(n: int) -> int:
            return int(n * fraction)

        if kind == "line_counts":
            lines = {
                str(i): {
                    "in": grow(self._count(kind, wall_hour, f"{i}in")) if i <= self.lines else 0,
                    "out": grow(self._count(kind, wall_hour, f"{i}out")) if i <= self.lines else 0,
                }
                for i in range(1, self._shown(self.lines) + 1)
            }
            total = {d: sum(v[d] for v in lines.values()) for d in ("in", "out")}
            return {"total": total, "lines": lines}
        return {
            "regions": {
                str(i): grow(self._count(kind, wall_hour, f"r{i}")) if i <= self.regions else 0
                for i in range(1, self._shown(self.regions) + 1)
            }
        }

    def _rows(
        self, kind: str, wall_from: datetime, wall_to: datetime
    ) -> list[tuple[datetime, dict[str, Any]]]:
        now = self.clock()
        oldest = now - HISTORY
        hour = max(
            wall_from, (oldest - timedelta(hours=1)).astimezone(self.zone).replace(tzinfo=None)
        )
        hour = hour.replace(minute=0, second=0, microsecond=0)
        wall_to = min(wall_to, (now + timedelta(days=2)).astimezone(self.zone).replace(tzinfo=None))
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

    def expected(
        self, kind: str, start_utc: datetime, end_utc: datetime, settled_s: float = FINAL_GRACE_S
    ) -> dict[str, dict[str, Any]]:
        """What a correct bridge delivers as final for periods starting in [start_utc, end_utc]:
        ``{utc_text(period_start): values}``, for periods that ended ``settled_s`` ago or more."""
        if kind not in ("line_counts", "region_counts"):
            raise ValueError(f"expected() knows line_counts and region_counts, not {kind!r}")
        now = self.clock()
        wall = start_utc.astimezone(self.zone).replace(
            tzinfo=None, minute=0, second=0, microsecond=0
        )
        wall_end = end_utc.astimezone(self.zone).replace(tzinfo=None)
        out = {}
        while wall <= wall_end:
            period = self._period(wall)
            if (
                period
                and start_utc <= period[0] <= end_utc
                and period[1] + timedelta(seconds=settled_s) <= now
                and period[1] > now - HISTORY
            ):
                out[utc_text(period[0])] = self._values(kind, wall, 1.0)
            wall += timedelta(hours=1)
        return out

    def date_header(self) -> str:
        """The HTTP Date of every answer: the camera's clock, in GMT as HTTP wants."""
        return formatdate(self.clock().timestamp(), usegmt=True)

    def live_values(self) -> dict[str, int]:
        """Today's running totals, as the live counters report them."""
        now = self.clock()
        local_now = now.astimezone(self.zone).replace(tzinfo=None)
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = self._rows("line_counts", midnight, local_now)
        people_in = sum(v["total"]["in"] for _, v in rows)
        people_out = sum(v["total"]["out"] for _, v in rows)
        return {
            "in": people_in,
            "out": people_out,
            "sum": people_in + people_out,
            "capacity": max(0, people_in - people_out),
        }

    # ------------------------------------------------------------ answers

    def csv(self, kind: str, wall_from: datetime, wall_to: datetime) -> str:
        style = self.header_style
        sep, dash = (",", "-") if style == "compact" else (", ", " - ")
        if kind == "line_counts":
            total = "Tolal" if style == "tolal" else "Total"
            names = [total] + [f"Line{i}" for i in range(1, self._shown(self.lines) + 1)]
            header = ["StartTime", "EndTime"] + [
                f"{n}{dash}{d}" for n in names for d in ("In", "Out", "Sum")
            ]
        else:
            region = {"tolal": "Region", "fewer": "REGION", "compact": "region"}[style]
            header = ["StartTime", "EndTime"] + [
                f"{region}{i}" for i in range(1, self._shown(self.regions) + 1)
            ]
        lines = [sep.join(header)]
        for hour, values in self._rows(kind, wall_from, wall_to):
            cells = [
                f"{hour:%Y/%m/%d %H:%M:%S}",
                f"{hour + timedelta(seconds=3599):%Y/%m/%d %H:%M:%S}",
            ]
            if kind == "line_counts":
                for v in [values["total"], *values["lines"].values()]:
                    cells += [str(v["in"]), str(v["out"]), str(v["in"] + v["out"])]
            else:
                cells += [str(n) for n in values["regions"].values()]
            lines.append(",".join(cells))
        end = "\r\n" if self.crlf else "\n"
        return end.join(lines) + end

    def live(self) -> str:
        v = self.live_values()
        parts = [f"var current_{k}_count='{v[k]}';" for k in ("in", "out", "sum", "capacity")]
        parts.append("var current_counter_alarm='0';")
        if self.header_style == "tolal":
            return "".join(parts)
        end = "\r\n" if self.crlf else "\n"
        return end.join(parts) + end

    # ------------------------------------------------------------ auth

    def system_information(self) -> str:
        """The JSON of ``get.system.information``: who this camera is."""
        return json.dumps(
            {
                "deviceName": "Network Camera",
                "model": self.model,
                "snCode": self.serial,
                "firmwareVersion": self.firmware,
                "macAddress": self.mac,
            }
        )

    def authorised(self, method: str, uri: str, header: str | None) -> bool:
        if self.auth == "none" or not self.activated:
            return True
        if not header:
            return False
        scheme, _, credentials = header.partition(" ")
        if self.auth == "basic" and scheme.lower() == "basic":
            try:
                given = base64.b64decode(credentials, validate=True).decode("utf-8")
            except ValueError:
                return False
            return secrets.compare_digest(
                given.encode(), f"{self.username}:{self.password}".encode()
            )
        if self.auth == "digest" and scheme.lower() == "digest":
            fields = parse_keqv_list(parse_http_list(credentials))

            def md5(text: str) -> str:
                return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol's hash

            ha1 = md5(f"{self.username}:{REALM}:{self.password}")
            ha2 = md5(f"{method}:{uri}")
            want = md5(f"{ha1}:{self._nonce}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
            return (
                fields.get("username") == self.username
                and fields.get("nonce") == self._nonce
                and fields.get("uri") == uri
                and fields.get("qop") == "auth"
                and secrets.compare_digest(fields.get("response", ""), want)
            )
        return False

    def challenge(self) -> str:
        if self.auth == "digest":
            return f'Digest realm="{REALM}", qop="auth", nonce="{self._nonce}", algorithm=MD5'
        return f'Basic realm="{REALM}"'

    # ------------------------------------------------------------ serving

    def answer(
        self, method: str, path: str, authorization: str | None
    ) -> tuple[int, str, bytes, dict[str, str]]:
        """Status, content type, body and extra headers for one camera API request."""
        fault = self.fault
        if urlsplit(path).path in ("/", "/index.html"):  # the web UI's login page: no password
            return 200, "text/html", LOGIN_PAGE, {}
        if fault == "unauthorized" or not self.authorised(method, path, authorization):
            return (
                401,
                "text/html",
                b"<html><body>401 Unauthorized</body></html>",
                {"WWW-Authenticate": self.challenge()},
            )
        url = urlsplit(path)
        params = parse_qs(url.query)
        if url.path == "/cgi-bin/operator/operator.cgi" and params.get("action") == [
            "get.vca.alarmstatus"
        ]:
            body, ctype = self.live(), "text/plain"
        elif url.path == INFO_PATH and params.get("action") == ["get.system.information"]:
            body, ctype = self.system_information(), "application/json"
        else:
            kinds = {"vcalogcsv": "line_counts", "regionalcountlogcsv": "region_counts"}
            kind = kinds.get((params.get("dw") or [""])[0])
            start, end = _wall_param(params, "time_start"), _wall_param(params, "time_end")
            if url.path != "/dataloader.cgi" or not kind or not start or not end:
                return 404, "text/html", b"<html><body>404 Not Found</body></html>", {}
            body, ctype = self.csv(kind, start, end), "text/csv"
        if fault == "html":
            return 200, "text/html", BUSY_PAGE, {}
        if fault == "garbage":
            return 200, ctype, GARBAGE, {}
        if fault == "truncated":
            body = (
                _cut_mid_row(body)
                if ctype == "text/csv"
                else body[: body.index("current_out_count") + 11]
            )
        return 200, ctype, body.encode(), {}


def _cut_mid_row(body: str) -> str:
    """The answer broken off inside its last row, between two fields, as a crashing firmware sends it."""
    lines = body.splitlines(keepends=True)
    last = lines[-1]
    commas = [i for i, ch in enumerate(last) if ch == ","]
    cut = commas[min(2, len(commas) - 1)] if commas else len(last) // 2
    return "".join(lines[:-1]) + last[:cut]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hung up, or stop() closing its connection: nothing to report
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _wall_param(params: dict[str, list[str]], name: str) -> datetime | None:
    try:
        return datetime.strptime(params[name][0], "%Y-%m-%d-%H:%M:%S")
    except (KeyError, IndexError, ValueError):
        return None


class _Handler(BaseHTTPRequestHandler):
    camera: SimCamera  # set on the subclass _handler() makes

    protocol_version = "HTTP/1.1"
    server_version = "Milesight-Sim/1.0"
    timeout = 120  # an idle kept-alive connection is closed after this

    def setup(self) -> None:
        super().setup()
        with self.camera._lock:
            self.camera._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.camera._lock:
                self.camera._connections.discard(self.connection)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header tells the camera's own time, as a real camera's does."""
        return self.camera.date_header()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._log(str(code))

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.camera.announce:
            print(f"camera {self.camera.url}: {fmt % args}", flush=True)

    def _log(self, outcome: str) -> None:
        if self.camera.announce:
            fault = f" [fault {self.camera.fault}]" if self.camera.fault != "none" else ""
            print(
                f"{self.log_date_time_string()} {self.client_address[0]} {self.command} {self.path}"
                f" -> {outcome}{fault}",
                flush=True,
            )

    def _send(
        self, code: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        name = self.rfile.read(length).decode(errors="replace").strip()
        if urlsplit(self.path).path != "/_sim/fault":
            self._send(404, "text/plain", b"not found\n")
        elif name not in FAULTS:
            self._send(
                400, "text/plain", f"unknown fault {name!r}; one of {', '.join(FAULTS)}\n".encode()
            )
        else:
            self.camera.set_fault(name)
            self._send(200, "text/plain", f"fault: {name}\n".encode())

    def do_GET(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/_sim/fault":
            self._send(200, "text/plain", f"fault: {self.camera.fault}\n".encode())
            return
        with self.camera._lock:
            self.camera.requests_served += 1
            self.camera.paths[urlsplit(self.path).path] += 1
        if self.camera.latency_s:
            self.camera._stopping.wait(self.camera.latency_s)
        fault = self.camera.fault
        if fault in ("slow", "reset"):
            if fault == "slow":
                self.camera._stopping.wait(SLOW_S)
            self._log(f"no answer ({fault})")
            self.close_connection = True  # the connection closes without a byte of answer
            return
        code, content_type, body, headers = self.camera.answer(
            self.command, self.path, self.headers.get("Authorization")
        )
        with self.camera._lock:
            self.camera.answers[code] += 1
        self._send(code, content_type, body, headers)


def _handler(camera: SimCamera) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"camera": camera})


# ---------------------------------------------------------------- `sensor-bridge sim camera`


def _serve(args: argparse.Namespace) -> int:
    def make(stop: threading.Event) -> Background:
        camera = SimCamera(
            timezone=args.timezone,
            username=args.username,
            password=args.password,
            auth=args.auth,
            lines=args.lines,
            regions=args.regions,
            header_style=args.header_style,
            crlf=not args.lf,
            latency_ms=args.latency_ms,
            seed=args.seed,
            fault=args.fault,
            host=args.host,
            port=args.port,
            announce=True,
        )
        return Background(lambda: _announce(camera.start(), args), camera.stop, stop)

    return run_service(make)


def _announce(camera: SimCamera, args: argparse.Namespace) -> None:
    print(
        f"simulated Milesight camera on {camera.url} ({args.timezone}, auth {args.auth}, user "
        f"{args.username!r}, {args.lines} line(s), {args.regions} region(s), header {args.header_style})\n"
        f"  change its fault while it runs: curl -X POST -d html {camera.url}/_sim/fault "
        f"(one of {', '.join(FAULTS)})\nCtrl-C stops it.",
        flush=True,
    )


def add_command(sim_commands: argparse._SubParsersAction) -> None:
    cam = sim_commands.add_parser(
        "camera", help="serve a simulated Milesight people-counting camera"
    )
    cam.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    cam.add_argument("--port", type=int, default=8081, help="0 picks a free port (default 8081)")
    cam.add_argument(
        "--timezone", default="Europe/Lisbon", help="the camera's wall-clock zone (IANA)"
    )
    cam.add_argument("--username", default="admin")
    cam.add_argument("--password", default="")
    cam.add_argument("--auth", choices=("basic", "digest", "none"), default="basic")
    cam.add_argument(
        "--lines", type=int, choices=range(1, 5), default=4, help="counting lines, 1..4"
    )
    cam.add_argument("--regions", type=int, choices=range(1, 5), default=4, help="regions, 1..4")
    cam.add_argument(
        "--header-style",
        choices=HEADER_STYLES,
        default="tolal",
        help="firmware variant: tolal (verbatim, typo included), fewer, compact",
    )
    cam.add_argument(
        "--lf", action="store_true", help="end lines with LF instead of the firmware's CRLF"
    )
    cam.add_argument("--latency-ms", type=float, default=0, help="delay before every answer")
    cam.add_argument("--fault", choices=FAULTS, default="none")
    cam.add_argument("--seed", type=int, default=0, help="which made-up store traffic to serve")
    cam.set_defaults(func=_serve)
