"""The cloud side of the contract, running for real on loopback: fixtures and helpers.

``cloud_stack`` (session) starts a throwaway PostgreSQL cluster in a temp dir
on a free 127.0.0.1 port, applies ``cloud/supabase/migrations``, builds
``cloud/nextjs`` with the real ``next build`` (once per session) and serves it
with ``next start``, connected as a login role that is only a member of
``service_role``, as on Supabase.
``cloud_api`` (per test) registers a fresh bridge with ``cloud/bin/add-bridge``
and yields its URLs, key and a SQL ``query`` helper.

Use them from another test module by loading this module as a plugin::

    pytest_plugins = ["cloud_helpers"]

    def test_uplink_delivers(cloud_api): ...  # cloud_api.ingest_url, .api_key, .query(sql)

Tests skip, naming what is missing, when PostgreSQL's server binaries, psql,
node or npm are absent. ``npm ci`` runs when ``cloud/nextjs/node_modules`` is
missing or older than its lock file. Nothing here talks to any address but
127.0.0.1 (and npm's registry, for installs).

(PYTEST_DONT_REWRITE: test modules import helpers from here before pytest
loads it as a plugin; there are no asserts to rewrite.)
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from auth_standin import AuthStandIn

REPO = Path(__file__).resolve().parents[1]
CLOUD = REPO / "cloud"
NEXTJS = CLOUD / "nextjs"
MIGRATIONS = CLOUD / "supabase" / "migrations"
ADD_BRIDGE = CLOUD / "bin" / "add-bridge"
BRIDGES_CLI = CLOUD / "bin" / "bridges"
API_ROLE = "bridge_api"  # the routes' login role: a member of service_role only

INGEST_SCHEMA = "sensor-bridge/ingest/v1"
HEARTBEAT_SCHEMA = "sensor-bridge/heartbeat/v1"


# --------------------------------------------------------------------------
# What the machine has
# --------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin that has initdb, pg_ctl and postgres."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for path in candidates:
        bindir = Path(path)
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    return None


def missing_tools() -> str | None:
    """Why the cloud stack cannot run here, or None when it can."""
    missing = []
    if pg_bindir() is None:
        missing.append("PostgreSQL server binaries (apt-get install postgresql)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing.append("node and npm (Node.js 20)")
    if shutil.which("bash") is None:
        missing.append("bash")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("a 'postgres' user to run the server as (root cannot)")
    return "cloud tests need " + ", ".join(missing) if missing else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migration_files() -> list[Path]:
    files = sorted(MIGRATIONS.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {MIGRATIONS}")
    return files


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dollar_quoted(text: str) -> str:
    """``text`` as a dollar-quoted SQL literal whose tag cannot occur in it."""
    while True:
        tag = f"$j{secrets.token_hex(4)}$"
        if tag not in text:
            return f"{tag}{text}{tag}"


class PsqlError(RuntimeError):
    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"psql exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temp dir, on 127.0.0.1:<free port>.

    As root the server runs as the ``postgres`` user (PostgreSQL refuses root),
    so the temp dir is handed to that user. ``fast`` turns off fsync: fine for
    a cluster that is deleted afterwards, not for measuring commit costs.
    """

    def __init__(self, *, fast: bool = True) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bindir = bindir
        self.fast = fast
        self.root = Path(
            tempfile.mkdtemp(prefix="sensor-bridge-pg-", dir="/tmp" if os.geteuid() == 0 else None)
        )
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> ThrowawayPostgres:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(
            0o755
        )  # psql (as root) reads nothing here, but the socket dir must be reachable
        subprocess.run(
            self._as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=60",
            "-c shared_buffers=64MB",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        last_error = ""
        for _ in range(3):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            run = subprocess.run(
                self._as_server_user(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        " ".join([f"-p {self.port}", *options]),
                        "start",
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=90,
            )
            if run.returncode == 0:
                self.started = True
                return self
            last_error = run.stderr + (self.log.read_text() if self.log.exists() else "")
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                self._as_server_user(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
                timeout=60,
            )
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(
        self,
        script: str,
        *,
        database: str = "postgres",
        user: str = "postgres",
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run an SQL script (stdin) with psql; unaligned, tuples only, stop at the first error."""
        run = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url(user, database),
            ],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PGTZ": "UTC", "PGAPPNAME": "sensor-bridge-tests"},
        )
        if check and run.returncode != 0:
            raise PsqlError(run.returncode, run.stderr)
        return run

    def query(
        self, sql: str, *, database: str = "postgres", user: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Rows of a SELECT (or of DML with RETURNING) as tuples of JSON-typed values.

        Numbers come back as int/float, booleans as bool, jsonb as dict/list,
        timestamps as ISO text in UTC, NULL as None. Column names must be
        distinct (each row travels as a JSON object).
        """
        body = sql.strip().rstrip(";")
        out = self.psql(
            f"with q as ({body}) select coalesce(json_agg(q), '[]') from q;",
            database=database,
            user=user,
        ).stdout
        return [tuple(row.values()) for row in json.loads(out)]

    def apply_migrations(self, database: str = "postgres") -> None:
        for path in migration_files():
            self.psql(f"\\set ON_ERROR_STOP 1\n\\i {path}\n", database=database)


# --------------------------------------------------------------------------
# Next.js: npm ci, `next build` once per session, `next start`
# --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where generated apps and their node_modules are kept between runs (CI reruns stay fast)."""
    for base in (
        os.environ.get("SENSOR_BRIDGE_TEST_CACHE"),
        "/var/cache/sensor-bridge-tests",
        str(Path.home() / ".cache" / "sensor-bridge-tests"),
    ):
        if not base:
            continue
        path = Path(base)
        with contextlib.suppress(OSError):
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
    raise RuntimeError("no writable cache directory for the cloud tests")


def npm(args: Sequence[str], cwd: Path, timeout: float = 900) -> str:
    """Run npm (no audit, no fund, no telemetry); its output, or RuntimeError with it."""
    run = subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"},
    )
    if run.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} in {cwd} failed:\n{run.stdout}\n{run.stderr}")
    return run.stdout + run.stderr


def ensure_node_modules(app: Path = NEXTJS) -> None:
    """``npm ci`` in ``app`` when node_modules is missing or older than package-lock.json."""
    lock = app / "package-lock.json"
    marker = app / "node_modules" / ".sensor-bridge-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if (
        marker.exists()
        and marker.read_text() == digest
        and (app / "node_modules" / ".bin" / "next").exists()
    ):
        return
    npm(["ci"], app)
    marker.write_text(digest)


class NextBuild:
    """``next build`` of one app directory; ``.log`` is what it printed (for "no prerender noise" checks)."""

    def __init__(self, app: Path) -> None:
        self.app = app
        self.log = ""

    def run(self, timeout: float = 900) -> NextBuild:
        started = time.monotonic()
        run = subprocess.run(
            [str(self.app / "node_modules" / ".bin" / "next"), "build"],
            cwd=self.app,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**clean_env(), "NEXT_TELEMETRY_DISABLED": "1"},
        )
        self.log = run.stdout + run.stderr
        if run.returncode != 0:
            raise RuntimeError(f"next build in {self.app} failed:\n{self.log}")
        self.seconds = time.monotonic() - started
        return self


_builds: dict[Path, NextBuild] = {}


def built_app(app: Path = NEXTJS) -> NextBuild:
    """``app`` installed and built, once per process whatever asks for it."""
    if app not in _builds:
        if app == NEXTJS:
            ensure_node_modules(app)
        _builds[app] = NextBuild(app).run()
    return _builds[app]


def clean_env() -> dict[str, str]:
    """The environment without anything the app reads, so each server gets only what it is given."""
    prefixes = (
        "DATABASE_",
        "BRIDGE_",
        "ALERT_",
        "FLEET_",
        "CRON_SECRET",
        "STATUS_TOKEN",
        "PG",
        "NEXT_PUBLIC_SUPABASE_",
        "SUPABASE_",
    )
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class NextServer:
    """``next start`` of a built app on 127.0.0.1:<free port>, with its own environment."""

    def __init__(
        self,
        database_url: str,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        app: Path = NEXTJS,
    ) -> None:
        self.database_url = database_url
        self.env = dict(env or {})
        self.app = app
        self.log = Path(
            tempfile.mkstemp(prefix="sensor-bridge-next-", suffix=".log", dir=log_dir)[1]
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self, timeout: float = 60) -> NextServer:
        env = {
            **clean_env(),
            **self.env,
            "DATABASE_URL": self.database_url,
            "NEXT_TELEMETRY_DISABLED": "1",
        }
        for _ in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(
                    [
                        str(self.app / "node_modules" / ".bin" / "next"),
                        "start",
                        "-H",
                        "127.0.0.1",
                        "-p",
                        str(port),
                    ],
                    cwd=self.app,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if self._answers(f"http://127.0.0.1:{port}", timeout):
                self.base_url = f"http://127.0.0.1:{port}"
                return self
            if "EADDRINUSE" not in self.output():
                break
        output = self.output()
        self.stop()
        raise RuntimeError(f"next start did not answer:\n{output}")

    def _answers(self, url: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1),
            ):
                return True
            time.sleep(0.05)
        return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


# --------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------


def cloud_tool(
    pg: ThrowawayPostgres, script: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a cloud/bin shell tool against ``pg``; RuntimeError with its stderr when ``check`` and it fails."""
    run = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": pg.url(), "PATH": f"{pg.bindir}:{os.environ['PATH']}"},
    )
    if check and run.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed: {run.stderr}")
    return run


@dataclass
class CloudApi:
    """One registered bridge and where to send its requests."""

    ingest_url: str
    heartbeat_url: str
    stale_url: str
    api_key: str
    bridge_id: str
    stack: CloudStack = field(repr=False)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` run as the database owner (see ThrowawayPostgres.query)."""
        return self.stack.pg.query(sql)


class CloudStack:
    """PostgreSQL with the migration applied plus the route server in front of it.

    The fleet page's sign-in goes to ``auth`` (tests/auth_standin.py), a
    loopback stand-in for Supabase's auth server; ``person(email, role)``
    makes a signed-up user who is one of the fleet's people.
    """

    def __init__(self, *, fast: bool = True, server_env: Mapping[str, str] | None = None) -> None:
        self.pg = ThrowawayPostgres(fast=fast)
        self.auth = AuthStandIn()
        self.cron_secret = secrets.token_urlsafe(16)
        self.fleet_auth = (
            "fleet",
            secrets.token_urlsafe(12),
        )  # FLEET_USER, FLEET_PASSWORD: the read-only view of the fleet page
        self.server_env = {
            "CRON_SECRET": self.cron_secret,
            "FLEET_USER": self.fleet_auth[0],
            "FLEET_PASSWORD": self.fleet_auth[1],
            "NEXT_PUBLIC_SUPABASE_URL": self.auth.url,
            "NEXT_PUBLIC_SUPABASE_ANON_KEY": self.auth.anon_key,
            "SUPABASE_SERVICE_ROLE_KEY": self.auth.service_key,
            **(server_env or {}),
        }
        self.server: NextServer | None = None

    def person(self, email: str, role: str, password: str | None = None) -> tuple[str, str]:
        """A Supabase user with a password who is one of the fleet's people as ``role``: (email, password)."""
        password = password or secrets.token_urlsafe(12)
        self.auth.add_user(email, password)
        self.bridges("member", "add", email, "--role", role)
        return email, password

    def signed_in(self, email: str, role: str) -> requests.Session:
        """A requests session signed in as a new person of ``role`` (the cookies @supabase/ssr keeps)."""
        self.person(email, role)
        session = requests.Session()
        session.cookies.update(self.auth.session_cookies(email))
        return session

    def start(self) -> CloudStack:
        try:
            self.auth.start()
            self.pg.start()
            self.pg.apply_migrations()
            # The routes log in as a role that has only service_role's rights, as
            # on Supabase, so the migration's grants and policies are what is tested.
            self.pg.psql(f"create role {API_ROLE} login in role service_role;")
            self.server = self.start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(
        self,
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        app: Path = NEXTJS,
    ) -> NextServer:
        """Another ``next start`` of the built app on this database (or ``database_url``), e.g. with other limits."""
        built_app(app)
        server = NextServer(
            database_url or self.pg.url(API_ROLE),
            {**self.server_env, **(env or {})},
            log_dir=self.pg.root,
            app=app,
        )
        return server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.pg.stop()
        self.auth.stop()

    @property
    def base_url(self) -> str:
        if self.server is None:
            raise RuntimeError("the cloud stack is not running")
        return self.server.base_url

    def add_bridge(self, bridge_id: str, *args: str) -> str:
        """Register a bridge with cloud/bin/add-bridge; returns the printed key."""
        run = subprocess.run(
            ["bash", str(ADD_BRIDGE), bridge_id, "--key-only", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "DATABASE_URL": self.pg.url(),
                "PATH": f"{self.pg.bindir}:{os.environ['PATH']}",
            },
        )
        if run.returncode != 0:
            raise RuntimeError(f"add-bridge failed: {run.stderr}")
        return run.stdout.strip()

    def api(self, bridge_id: str | None = None) -> CloudApi:
        bridge_id = bridge_id or f"test-{uuid.uuid4().hex[:12]}"
        key = self.add_bridge(bridge_id)
        return CloudApi(
            ingest_url=f"{self.base_url}/api/bridge/v1/ingest",
            heartbeat_url=f"{self.base_url}/api/bridge/v1/heartbeat",
            stale_url=f"{self.base_url}/api/bridge/v1/stale",
            api_key=key,
            bridge_id=bridge_id,
            stack=self,
        )

    def reset(self) -> None:
        """Forget every bridge and reading, so a test sees only its own data."""
        self.pg.psql(
            "truncate public.bridge_readings, public.bridge_sensors, public.bridges,"
            " public.bridge_enrollments, public.bridge_enroll_tokens, public.bridge_enroll_rate,"
            " public.bridge_claim_attempts, public.fleet_members cascade;"
        )

    def bridges(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run cloud/bin/bridges against this database; RuntimeError with its stderr when ``check`` and it fails."""
        return cloud_tool(self.pg, BRIDGES_CLI, *args, check=check)

    def ingest_sql(self, bridge_id: str, batch: Mapping[str, Any] | str) -> dict[str, Any]:
        """Call ingest_bridge_batch directly (one psql session), as the routes' role."""
        text = batch if isinstance(batch, str) else json.dumps(batch)
        out = self.pg.psql(
            f"select public.ingest_bridge_batch({sql_literal(bridge_id)}, {dollar_quoted(text)}::jsonb);",
            user=API_ROLE,
        ).stdout
        return json.loads(out)


@pytest.fixture(scope="session")
def cloud_stack() -> Iterator[CloudStack]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    # No request budget here: an end-to-end test may heartbeat every second.
    # The limit itself is tested on a server of its own (start_server).
    stack = CloudStack(server_env={"BRIDGE_RATE_PER_MIN": "0"}).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def cloud_api(cloud_stack: CloudStack) -> CloudApi:
    """A freshly registered bridge: .ingest_url, .heartbeat_url, .api_key, .bridge_id, .query(sql).

    The database is emptied first, so a test sees only its own bridges,
    readings and incidents.
    """
    cloud_stack.reset()
    return cloud_stack.api()


# --------------------------------------------------------------------------
# Contract payloads (built from the contract, not from the appliance's code)
# --------------------------------------------------------------------------

ENROLL_SCHEMA = "sensor-bridge/enroll/v1"
CLAIM_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_claim_code() -> str:
    """A claim code as a bridge shows it: ``XXXX-XXXX`` from the unambiguous alphabet."""
    chars = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


@dataclass
class FakeAdoptee:
    """What a bridge makes on first boot (docs/ingest-contract.md, "Adoption"): credential, claim code, serial."""

    serial: str = field(default_factory=lambda: "10000000" + secrets.token_hex(4))
    credential: str = field(default_factory=lambda: "sbk_" + secrets.token_urlsafe(32))
    code: str = field(default_factory=new_claim_code)

    def body(self, **changes: Any) -> dict[str, Any]:
        body = {
            "schema": ENROLL_SCHEMA,
            "serial": self.serial,
            "machine_id": secrets.token_hex(16),
            "macs": ["dc:a6:32:01:02:03"],
            "version": "0.1.0",
            "lan_address": "192.0.2.20",  # TEST-NET-1, config data: never contacted
            "hostname": f"sensor-bridge-{self.serial[-6:]}",
            "credential_sha256": sha256_hex(self.credential),
            "claim_code_sha256": sha256_hex(self.code.replace("-", "").upper()),
        }
        body.update(changes)
        return body


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_id(sensor_id: str, kind: str, period_start: str) -> str:
    return hashlib.sha256(f"{sensor_id}|{kind}|{period_start}".encode()).hexdigest()


DEFAULT_VALUES: dict[str, dict[str, Any]] = {
    "line_counts": {
        "total": {"in": 7, "out": 5},
        "lines": {"1": {"in": 4, "out": 3}, "2": {"in": 3, "out": 2}},
    },
    "region_counts": {"regions": {"1": 3, "2": 0}},
    "live_counts": {"in": 120, "out": 117, "sum": 3, "capacity": 50},
    "occupancy": {"current_total": 4, "max": None, "regions": {"1": 4}},
    "event": {"event": "tamper", "payload": {"device_sn": "6723D1", "alarm": True}},
}


def recent_period_start(periods_ago: int = 1, minutes: int = 5) -> datetime:
    """The start of a whole ``minutes`` period, ``periods_ago`` periods before now."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % minutes) - timedelta(minutes=minutes * periods_ago)


def make_record(
    sensor_id: str = "entrance-1",
    kind: str = "line_counts",
    start: datetime | None = None,
    *,
    revision: int = 1,
    final: bool = True,
    values: Mapping[str, Any] | None = None,
    source: str = "poll",
    period_minutes: int = 5,
) -> dict[str, Any]:
    """A valid contract record (live_counts as a snapshot: start == end, final)."""
    start = start or recent_period_start()
    end = start if kind == "live_counts" else start + timedelta(minutes=period_minutes)
    period_start = utc_text(start)
    return {
        "id": record_id(sensor_id, kind, period_start),
        "sensor_id": sensor_id,
        "kind": kind,
        "period_start": period_start,
        "period_end": utc_text(end),
        "final": True if kind == "live_counts" else final,
        "revision": revision,
        "source": source,
        "observed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "values": json.loads(json.dumps(values if values is not None else DEFAULT_VALUES[kind])),
    }


def make_series(
    sensor_id: str,
    count: int,
    *,
    kind: str = "line_counts",
    revision: int = 1,
    first: datetime | None = None,
    salt: str = "",
) -> list[dict[str, Any]]:
    """``count`` consecutive 5-minute records of one sensor, oldest first."""
    first = first or recent_period_start(count)
    records = []
    for i in range(count):
        record = make_record(
            f"{sensor_id}{salt}", kind, first + timedelta(minutes=5 * i), revision=revision
        )
        if kind == "line_counts":
            record["values"]["total"]["in"] = i + revision
        records.append(record)
    return records


def make_batch(
    bridge_id: str, records: Sequence[Mapping[str, Any]], batch_id: str | None = None
) -> dict[str, Any]:
    return {
        "schema": INGEST_SCHEMA,
        "bridge_id": bridge_id,
        "batch_id": batch_id or uuid.uuid4().hex,
        "sent_at": utc_text(datetime.now(UTC)),
        "records": list(records),
    }


def make_heartbeat(bridge_id: str, state: str = "ok") -> dict[str, Any]:
    return {
        "schema": HEARTBEAT_SCHEMA,
        "bridge_id": bridge_id,
        "version": "0.1.0",
        "sent_at": utc_text(datetime.now(UTC)),
        "uptime_s": 42,
        "state": state,
        "outbox": {"pending": 3, "oldest_pending_age_s": 12, "dead_letter": 0, "dropped": 0},
        "sensors": [
            {
                "id": "entrance-1",
                "state": "ok",
                "last_success": utc_text(datetime.now(UTC)),
                "last_error": None,
            }
        ],
        "host": {"disk_free_mb": 20480, "mem_used_pct": 31.5, "cpu_temp_c": None, "load1": 0.2},
    }


def contract_headers(
    api_key: str, batch_id: str | None = None, *, gzipped: bool = False
) -> dict[str, str]:
    """The headers the appliance's uplink sends (ingest contract, "Batch")."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {api_key}",
        "User-Agent": "sensor-bridge/0.1.0",
    }
    if batch_id is not None:
        headers["Idempotency-Key"] = batch_id
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers


def encode_body(payload: Mapping[str, Any], *, gzipped: bool = False) -> bytes:
    raw = json.dumps(payload).encode()
    return gzip.compress(raw) if gzipped else raw
