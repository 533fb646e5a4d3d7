-- Optional heartbeat keys for fleet management (docs/ingest-contract.md#heartbeat):
--   wireguard_public_key  the bridge's WireGuard public key (`sensor-bridge remote show`), a string
--   last_update           what its last update did ("update to 0.3.0 failed: ...; rolled back"), a string
-- Receivers first: the bridge sends them once this is deployed. The rest of the rules are
-- those of 20261126210000_sensor_bridge.sql, unchanged.

create or replace function public.bridge_heartbeat_error(b jsonb)
returns text language sql stable parallel safe as $$
  select case
    when jsonb_typeof(b) is distinct from 'object' then 'heartbeat: must be a JSON object'
    when (b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host,wireguard_public_key,last_update}'::text[]) <> '{}'::jsonb
      then 'heartbeat: unknown key(s) ' || jsonb_path_query_array(
             b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host,wireguard_public_key,last_update}'::text[],
             '$.keyvalue().key')::text
    when not b ?& '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host}'::text[]
      then 'heartbeat: missing key(s) ' || array_to_string(array(
             select k from unnest('{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host}'::text[]) k
             where not b ? k), ', ')
    when b -> 'schema' <> '"sensor-bridge/heartbeat/v1"'::jsonb
      then 'schema: must be "sensor-bridge/heartbeat/v1"'
    when jsonb_typeof(b -> 'bridge_id') <> 'string' then 'bridge_id: must be a string'
    when jsonb_typeof(b -> 'version') <> 'string' then 'version: must be a string'
    when jsonb_typeof(b -> 'sent_at') <> 'string' or public.bridge_utc(b ->> 'sent_at') is null
      then 'sent_at: must be RFC 3339 UTC with Z'
    when case when jsonb_typeof(b -> 'uptime_s') = 'number' then (b ->> 'uptime_s')::numeric < 0 else true end
      then 'uptime_s: must be a number >= 0'
    when jsonb_typeof(b -> 'state') <> 'string'
         or b ->> 'state' not in ('ok', 'degraded', 'error', 'starting', 'no-config', 'maintenance')
      then 'state: must be one of ok, degraded, error, starting, no-config, maintenance'
    when jsonb_typeof(b -> 'outbox') <> 'object'
         or exists (select 1 from unnest('{pending,oldest_pending_age_s,dead_letter,dropped}'::text[]) k
                    where case when jsonb_typeof(b -> 'outbox' -> k) = 'number'
                               then (b -> 'outbox' ->> k)::numeric < 0 else true end)
      then 'outbox: must hold pending, oldest_pending_age_s, dead_letter and dropped as numbers >= 0'
    when jsonb_typeof(b -> 'sensors') <> 'array'
         or exists (select 1 from jsonb_array_elements(b -> 'sensors') s
                    where jsonb_typeof(s) <> 'object'
                       or jsonb_typeof(s -> 'id') is distinct from 'string'
                       or (s ->> 'state') is distinct from 'ok' and (s ->> 'state') is distinct from 'failing'
                          and (s ->> 'state') is distinct from 'unknown'
                       or coalesce(jsonb_typeof(s -> 'last_success'), 'null') not in ('string', 'null')
                       or coalesce(jsonb_typeof(s -> 'last_error'), 'null') not in ('string', 'null'))
      then 'sensors: must be a list of {"id": string, "state": "ok|failing|unknown", "last_success", "last_error"}'
    when jsonb_typeof(b -> 'host') <> 'object'
         or exists (select 1 from unnest('{disk_free_mb,mem_used_pct,cpu_temp_c,load1}'::text[]) k
                    where coalesce(jsonb_typeof(b -> 'host' -> k), 'missing') not in ('number', 'null'))
      then 'host: must hold disk_free_mb, mem_used_pct, cpu_temp_c and load1 as numbers or null'
    when b ? 'wireguard_public_key' and jsonb_typeof(b -> 'wireguard_public_key') <> 'string'
      then 'wireguard_public_key: must be a string'
    when b ? 'last_update' and jsonb_typeof(b -> 'last_update') <> 'string'
      then 'last_update: must be a string'
  end
$$;
