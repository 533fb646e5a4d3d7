"""Benchmark: the fleet page with a real fleet's size, through `next start`.

200 bridges, 400 line-counting sensors and 5 million readings (about 43 days
of 5-minute periods each), made with generate_series in a throwaway
PostgreSQL; then GET /bridges and GET /bridges/<id> (7 days of hourly counts
for two sensors) through the built app. Prints the median and the slowest of
--requests each, as the client on loopback sees them (server time plus a
loopback round trip). The goal: under 500 ms.

Run: .venv/bin/python bench/fleet_page.py [--readings 5000000] [--requests 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cloud_helpers import CloudStack, missing_tools  # noqa: E402

BRIDGES = 200
SENSORS_PER_BRIDGE = 2


def fleet_sql(readings: int) -> str:
    per_sensor = readings // (BRIDGES * SENSORS_PER_BRIDGE)
    return f"""
insert into public.bridges (id, api_key_sha256, label, last_heartbeat_at, last_heartbeat)
select format('store-%s', lpad(b::text, 3, '0')), encode(sha256(b::text::bytea), 'hex'), format('Store %s', b),
       now() - case when b % 20 = 0 then interval '3 hours' else interval '30 seconds' end,
       jsonb_build_object('schema', 'sensor-bridge/heartbeat/v1', 'bridge_id', format('store-%s', lpad(b::text, 3, '0')),
         'version', '0.1.0', 'sent_at', now(), 'uptime_s', 1000, 'state', case when b % 33 = 0 then 'error' else 'ok' end,
         'outbox', jsonb_build_object('pending', b % 7, 'oldest_pending_age_s', 3, 'dead_letter', 0, 'dropped', 0),
         'sensors', jsonb_build_array(
            jsonb_build_object('id', format('store-%s-door-1', b), 'state', 'ok', 'last_success', now(), 'last_error', null),
            jsonb_build_object('id', format('store-%s-door-2', b), 'state', 'ok', 'last_success', now(), 'last_error', null)),
         'host', jsonb_build_object('disk_free_mb', 1000, 'mem_used_pct', 30, 'cpu_temp_c', null, 'load1', 0.1))
  from generate_series(1, {BRIDGES}) b;

insert into public.bridge_readings (id, sensor_id, kind, period_start, period_end, final, revision, source,
                                    observed_at, "values", bridge_id)
select md5(format('%s|%s|%s', b, s, p)) || md5(format('%s|%s|%s|x', b, s, p)),
       format('store-%s-door-%s', b, s), 'line_counts', t, t + interval '5 minutes', true, 1, 'poll', t,
       jsonb_build_object('total', jsonb_build_object('in', (p * 7 + b) % 23, 'out', (p * 5 + b) % 19), 'lines', '{{}}'::jsonb),
       format('store-%s', lpad(b::text, 3, '0'))
  from generate_series(1, {BRIDGES}) b, generate_series(1, {SENSORS_PER_BRIDGE}) s,
       generate_series(0, {per_sensor - 1}) p,
       lateral (select date_trunc('hour', now()) - (p * interval '5 minutes')) as at(t);

insert into public.bridge_sensors (bridge_id, sensor_id, kind, last_period_end, last_final_period_end)
select format('store-%s', lpad(b::text, 3, '0')), format('store-%s-door-%s', b, s), 'line_counts',
       date_trunc('hour', now()) + interval '5 minutes', date_trunc('hour', now()) + interval '5 minutes'
  from generate_series(1, {BRIDGES}) b, generate_series(1, {SENSORS_PER_BRIDGE}) s;

insert into public.bridge_alert_incidents (what, bridge_id, opened_at)
select 'bridge_silent', format('store-%s', lpad(b::text, 3, '0')), now() - interval '3 hours'
  from generate_series(20, {BRIDGES}, 20) b;
analyze;
"""


def timings(url: str, session: requests.Session, count: int) -> list[float]:
    session.get(url, timeout=60)  # warm: the first request compiles and connects
    taken = []
    for _ in range(count):
        start = time.perf_counter()
        answer = session.get(url, timeout=60)
        taken.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200 and "store-" in answer.text, answer.status_code
    return taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    reason = missing_tools()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    stack = CloudStack().start()
    try:
        start = time.perf_counter()
        stack.pg.psql(fleet_sql(args.readings), timeout=3600)
        made = time.perf_counter() - start
        count = stack.pg.query("select count(*) from public.bridge_readings")[0][0]
        print(
            f"{BRIDGES} bridges, {BRIDGES * SENSORS_PER_BRIDGE} sensors, {count:,} readings (made in {made:.0f}s)"
        )
        # two ways in: an admin signed in (the auth server asked on each request, as
        # on Supabase, here its loopback stand-in; every section of the page drawn)
        # and basic auth's read-only view
        admin = stack.signed_in("bench@example.com", "admin")
        wall = requests.Session()
        wall.auth = stack.fleet_auth
        for who, session in [("admin", admin), ("basic auth", wall)]:
            for name, path in [("/bridges", "/bridges"), ("/bridges/<id>", "/bridges/store-100")]:
                taken = timings(f"{stack.base_url}{path}", session, args.requests)
                print(
                    f"GET {name:<15} {who:<10} median {statistics.median(taken):6.1f} ms   slowest {max(taken):6.1f} ms"
                    f"   ({args.requests} requests)"
                )
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
