// What the fleet page reads. Explicit column lists: the key hash never
// leaves the database. Every query is bounded by the fleet's size (bridges,
// sensors, open incidents) or by one bridge's last 7 days of line counts
// (bridge_readings_bridge_sensor_period), never by all readings ever stored.
// A sensor is always named with its bridge: every store may have an entrance-1.

import { pool } from "../bridge/db";

export const CHART_HOURS = 168;

export interface FleetRow {
  id: string;
  label: string;
  retired: boolean;
  state: string | null;
  age_s: number | null;
  version: string | null;
  backlog: number | null;
  dropped: number | null;
  open_incidents: number;
  /** the bridge's sensor ids: delivered readings or named in its last heartbeat */
  sensors: string[];
}

export async function fleetRows(): Promise<FleetRow[]> {
  const { rows } = await pool().query<FleetRow>(
    `select b.id, b.label, b.disabled_at is not null as retired,
            b.last_heartbeat ->> 'state' as state,
            extract(epoch from clock_timestamp() - b.last_heartbeat_at)::float8 as age_s,
            b.last_heartbeat ->> 'version' as version,
            (b.last_heartbeat -> 'outbox' ->> 'pending')::bigint::float8 as backlog,
            (b.last_heartbeat -> 'outbox' ->> 'dropped')::bigint::float8 as dropped,
            coalesce(i.open, 0)::int as open_incidents,
            coalesce((select array_agg(x.sensor_id order by x.sensor_id)
                        from (select s.sensor_id from public.bridge_sensors s where s.bridge_id = b.id
                              union
                              select h ->> 'id' from jsonb_array_elements(
                                coalesce(b.last_heartbeat -> 'sensors', '[]')) h) x), '{}') as sensors
       from public.bridges b
       left join (select bridge_id, count(*) as open from public.bridge_alert_incidents
                   where closed_at is null group by bridge_id) i on i.bridge_id = b.id
      order by (b.disabled_at is not null), lower(b.label), b.id`,
  );
  return rows;
}

export interface BridgeHeader extends Omit<FleetRow, "sensors"> {
  heartbeat_at: Date | null;
}

export interface SensorRow {
  sensor_id: string;
  kinds: string[];
  state: string | null;
  last_final: Date | null;
  retired: boolean;
}

export interface HourlySeries {
  sensor_id: string;
  /** people counted in, one per hour, oldest first; CHART_HOURS of them */
  counts: number[];
}

export interface BridgeDetail {
  bridge: BridgeHeader;
  sensors: SensorRow[];
  firstHour: Date;
  series: HourlySeries[];
}

export async function bridgeDetail(id: string): Promise<BridgeDetail | null> {
  const db = pool();
  const [header, sensors, hours] = await Promise.all([
    db.query<BridgeHeader>(
      `select b.id, b.label, b.disabled_at is not null as retired, b.last_heartbeat_at as heartbeat_at,
              b.last_heartbeat ->> 'state' as state,
              extract(epoch from clock_timestamp() - b.last_heartbeat_at)::float8 as age_s,
              b.last_heartbeat ->> 'version' as version,
              (b.last_heartbeat -> 'outbox' ->> 'pending')::bigint::float8 as backlog,
              (b.last_heartbeat -> 'outbox' ->> 'dropped')::bigint::float8 as dropped,
              (select count(*) from public.bridge_alert_incidents i
                where i.bridge_id = b.id and i.closed_at is null)::int as open_incidents
         from public.bridges b where b.id = $1`,
      [id],
    ),
    db.query<SensorRow>(
      `with delivered as (
         select sensor_id, array_agg(kind order by kind) as kinds, max(last_final_period_end) as last_final
           from public.bridge_sensors where bridge_id = $1 group by sensor_id),
       reported as (
         select s ->> 'id' as sensor_id, s ->> 'state' as state
           from public.bridges b, jsonb_array_elements(coalesce(b.last_heartbeat -> 'sensors', '[]')) s
          where b.id = $1)
       select coalesce(d.sensor_id, r.sensor_id) as sensor_id, coalesce(d.kinds, '{}') as kinds,
              r.state, d.last_final,
              exists (select 1 from public.bridge_retired_sensors x
                       where x.bridge_id = $1 and x.sensor_id = coalesce(d.sensor_id, r.sensor_id)) as retired
         from delivered d full join reported r on r.sensor_id = d.sensor_id
        order by 1`,
      [id],
    ),
    hourlyCounts(id),
  ]);
  const bridge = header.rows[0];
  if (!bridge) return null;
  return { bridge, sensors: sensors.rows, ...hours };
}

/** People in per hour over the last CHART_HOURS hours (the current one included), per line-counting sensor. */
async function hourlyCounts(id: string): Promise<{ firstHour: Date; series: HourlySeries[] }> {
  const { rows } = await pool().query<{ first_hour: Date; sensor_id: string | null; counts: number[] | null }>(
    `with span as (select date_trunc('hour', now()) - ($2::int - 1) * interval '1 hour' as first_hour),
     sensors as (select sensor_id from public.bridge_sensors where bridge_id = $1 and kind = 'line_counts'),
     hourly as (
       select r.sensor_id, date_trunc('hour', r.period_start) as hour,
              sum(coalesce((r."values" -> 'total' ->> 'in')::bigint, 0)) as people_in
         from public.bridge_readings r, span
        where r.sensor_id in (select sensor_id from sensors) and r.kind = 'line_counts'
          and r.bridge_id = $1 and r.period_start >= span.first_hour
        group by 1, 2)
     select span.first_hour, s.sensor_id,
            (select array_agg(coalesce(h.people_in, 0)::float8 order by g.hour)
               from generate_series(span.first_hour, span.first_hour + ($2::int - 1) * interval '1 hour',
                                    interval '1 hour') g(hour)
               left join hourly h on h.sensor_id = s.sensor_id and h.hour = g.hour) as counts
       from span left join sensors s on true
      order by s.sensor_id`,
    [id, CHART_HOURS],
  );
  const firstHour = rows[0]?.first_hour ?? new Date();
  const series = rows
    .filter((r): r is { first_hour: Date; sensor_id: string; counts: number[] } => r.sensor_id !== null)
    .map((r) => ({ sensor_id: r.sensor_id, counts: r.counts ?? [] }));
  return { firstHour, series };
}
