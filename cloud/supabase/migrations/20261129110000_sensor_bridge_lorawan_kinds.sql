-- sensor-bridge: the kinds LoRaWAN devices and pushed running totals need.
--
-- Adds, compatibly, on top of 20261126210000_sensor_bridge.sql (receivers
-- first; docs/ingest-contract.md "Changing the contract"):
--   * kind line_totals: a counter's running totals since its daily reset
--     (values shaped like line_counts), a snapshot at the report's time;
--   * kind dwell: per-region dwell time {"regions": {"1": {"avg", "max"}}};
--   * kind ambience: room measurements, a flat object of finite numbers;
--   * occupancy may carry "occupied" (region -> true/false) and
--     "region_names" (region -> name).
-- Idempotent: the check constraint is dropped and re-added, the functions
-- replaced.

alter table public.bridge_readings drop constraint if exists bridge_readings_kind_check;
alter table public.bridge_readings add constraint bridge_readings_kind_check
  check (kind in ('line_counts', 'region_counts', 'live_counts', 'occupancy', 'event',
                  'line_totals', 'dwell', 'ambience'));

-- true when j maps non-empty names to JSON booleans
create or replace function public.bridge_json_is_flag_map(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select jsonb_typeof(j) = 'object'
         and not exists (select 1 from jsonb_each(j) e where e.key = '' or jsonb_typeof(e.value) <> 'boolean')
$$;

-- true when j maps non-empty names to non-empty strings
create or replace function public.bridge_json_is_name_map(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select jsonb_typeof(j) = 'object'
         and not exists (select 1 from jsonb_each(j) e
                         where e.key = '' or jsonb_typeof(e.value) <> 'string' or e.value #>> '{}' = '')
$$;

-- true when j maps non-empty names to exactly {"avg": count, "max": count}
create or replace function public.bridge_json_is_dwell_map(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select jsonb_typeof(j) = 'object'
         and not exists (select 1 from jsonb_each(j) e
                         where e.key = '' or jsonb_typeof(e.value) <> 'object'
                            or (e.value - '{avg,max}'::text[]) <> '{}'::jsonb
                            or not public.bridge_json_is_count(e.value -> 'avg')
                            or not public.bridge_json_is_count(e.value -> 'max'))
$$;

-- Why `values` does not fit its kind (contract: "Kinds and their values"),
-- or null when it does. Keys are exact: an unknown key is a contract bug.
create or replace function public.bridge_values_error(kind text, v jsonb)
returns text language sql immutable parallel safe as $$
  select case
    when jsonb_typeof(v) is distinct from 'object' then 'values: must be an object'
    when kind in ('line_counts', 'line_totals') then case
      when (v - '{total,lines}'::text[]) <> '{}'::jsonb or not v ?& '{total,lines}'::text[]
        then 'values: ' || kind || ' needs exactly the keys total and lines'
      when not public.bridge_json_is_in_out(v -> 'total')
        then 'values.total: must be {"in": int >= 0, "out": int >= 0}'
      when not public.bridge_json_is_in_out_map(v -> 'lines')
        then 'values.lines: must map each line to {"in": int >= 0, "out": int >= 0}'
      end
    when kind = 'region_counts' then case
      when (v - 'regions') <> '{}'::jsonb or not v ? 'regions'
        then 'values: region_counts needs exactly the key regions'
      when not public.bridge_json_is_count_map(v -> 'regions')
        then 'values.regions: must map each region to an int >= 0'
      end
    when kind = 'live_counts' then case
      when (v - '{in,out,sum,capacity}'::text[]) <> '{}'::jsonb or not v ?& '{in,out,sum,capacity}'::text[]
        then 'values: live_counts needs exactly the keys in, out, sum and capacity'
      when not (public.bridge_json_is_count(v -> 'in') and public.bridge_json_is_count(v -> 'out')
                and public.bridge_json_is_count(v -> 'sum') and public.bridge_json_is_count(v -> 'capacity'))
        then 'values: in, out, sum and capacity must be ints >= 0'
      end
    when kind = 'occupancy' then case
      when (v - '{current_total,max,regions,occupied,region_names}'::text[]) <> '{}'::jsonb
           or not v ?& '{current_total,max,regions}'::text[]
        then 'values: occupancy needs exactly the keys current_total, max, regions (optionally occupied, region_names)'
      when not public.bridge_json_is_count(v -> 'current_total')
        then 'values.current_total: must be an int >= 0'
      when jsonb_typeof(v -> 'max') <> 'null' and not public.bridge_json_is_count(v -> 'max')
        then 'values.max: must be an int >= 0 or null'
      when not public.bridge_json_is_count_map(v -> 'regions')
        then 'values.regions: must map each region to an int >= 0'
      when v ? 'occupied' and not public.bridge_json_is_flag_map(v -> 'occupied')
        then 'values.occupied: must map each region to true or false'
      when v ? 'region_names' and not public.bridge_json_is_name_map(v -> 'region_names')
        then 'values.region_names: must map each region to a non-empty name'
      end
    when kind = 'dwell' then case
      when (v - 'regions') <> '{}'::jsonb or not v ? 'regions'
        then 'values: dwell needs exactly the key regions'
      when not public.bridge_json_is_dwell_map(v -> 'regions')
        then 'values.regions: must map each region to {"avg": int >= 0, "max": int >= 0}'
      end
    when kind = 'ambience' then case
      when v = '{}'::jsonb then 'values: ambience needs at least one measurement'
      when (v - '{temperature_c,humidity_pct,co2_ppm,tvoc_iaq,tvoc_ugm3,pressure_hpa,light_level,pir,hcho_mgm3,pm2_5_ugm3,pm10_ugm3,o3_ppm,battery_pct,distance_mm}'::text[]) <> '{}'::jsonb
        then 'values: ambience does not know ' || jsonb_path_query_array(
               v - '{temperature_c,humidity_pct,co2_ppm,tvoc_iaq,tvoc_ugm3,pressure_hpa,light_level,pir,hcho_mgm3,pm2_5_ugm3,pm10_ugm3,o3_ppm,battery_pct,distance_mm}'::text[],
               '$.keyvalue().key')::text
      when exists (select 1 from jsonb_each(v) e
                   where case when jsonb_typeof(e.value) <> 'number' then true
                              else abs((e.value)::text::numeric) > 9223372036854775807 end)
        then 'values: every ambience measurement must be a finite number'
      end
    when kind = 'event' then case
      when (v - '{event,payload}'::text[]) <> '{}'::jsonb or not v ?& '{event,payload}'::text[]
        then 'values: event needs exactly the keys event and payload'
      when jsonb_typeof(v -> 'event') <> 'string' then 'values.event: must be a string'
      when jsonb_typeof(v -> 'payload') <> 'object' then 'values.payload: must be an object'
      end
  end
$$;

-- Why one record breaks the contract, or null when it is valid. The first
-- failing rule wins; the message names the field so the appliance's
-- dead-letter list tells a person what to fix.
create or replace function public.bridge_record_error(r jsonb)
returns text language sql stable parallel safe as $$
  select case
    when jsonb_typeof(r) is distinct from 'object' then 'record: must be an object'
    when (r - '{id,sensor_id,kind,period_start,period_end,final,revision,source,observed_at,values}'::text[])
         <> '{}'::jsonb
      then 'record: unknown key(s) ' || jsonb_path_query_array(
             r - '{id,sensor_id,kind,period_start,period_end,final,revision,source,observed_at,values}'::text[],
             '$.keyvalue().key')::text
    when not r ?& '{id,sensor_id,kind,period_start,period_end,final,revision,source,observed_at,values}'::text[]
      -- concat_ws skips nulls; no subquery here, so the planner can inline this function
      then 'record: missing key(s) ' || concat_ws(', ',
             case when not r ? 'id' then 'id' end,
             case when not r ? 'sensor_id' then 'sensor_id' end,
             case when not r ? 'kind' then 'kind' end,
             case when not r ? 'period_start' then 'period_start' end,
             case when not r ? 'period_end' then 'period_end' end,
             case when not r ? 'final' then 'final' end,
             case when not r ? 'revision' then 'revision' end,
             case when not r ? 'source' then 'source' end,
             case when not r ? 'observed_at' then 'observed_at' end,
             case when not r ? 'values' then 'values' end)
    when jsonb_typeof(r -> 'id') <> 'string' or r ->> 'id' !~ '^[0-9a-f]{64}$'
      then 'id: must be 64 lowercase hex characters'
    when jsonb_typeof(r -> 'sensor_id') <> 'string' or length(r ->> 'sensor_id') not between 1 and 256
      then 'sensor_id: must be a non-empty string of at most 256 characters'
    when jsonb_typeof(r -> 'kind') <> 'string'
         or r ->> 'kind' not in ('line_counts', 'region_counts', 'live_counts', 'occupancy', 'event', 'line_totals', 'dwell', 'ambience')
      then 'kind: must be one of line_counts, region_counts, live_counts, occupancy, event, line_totals, dwell, ambience'
    when jsonb_typeof(r -> 'period_start') <> 'string' or public.bridge_utc(r ->> 'period_start', true) is null
      then 'period_start: must be RFC 3339 UTC with Z and whole seconds, e.g. 2025-07-22T09:00:00Z'
    when r ->> 'id' <> encode(sha256(convert_to(
           (r ->> 'sensor_id') || '|' || (r ->> 'kind') || '|' || (r ->> 'period_start'), 'UTF8')), 'hex')
      then 'id: is not sha256(sensor_id|kind|period_start)'
    when jsonb_typeof(r -> 'period_end') <> 'string' or public.bridge_utc(r ->> 'period_end') is null
      then 'period_end: must be RFC 3339 UTC with Z'
    when public.bridge_utc(r ->> 'period_end') < public.bridge_utc(r ->> 'period_start', true)
      then 'period_end: is before period_start'
    when jsonb_typeof(r -> 'final') <> 'boolean' then 'final: must be true or false'
    when case when public.bridge_json_is_count(r -> 'revision') then (r ->> 'revision')::numeric < 1 else true end
      then 'revision: must be an integer >= 1'
    when jsonb_typeof(r -> 'source') <> 'string' or r ->> 'source' not in ('poll', 'mqtt', 'http-push')
      then 'source: must be one of poll, mqtt, http-push'
    when jsonb_typeof(r -> 'observed_at') <> 'string' or public.bridge_utc(r ->> 'observed_at') is null
      then 'observed_at: must be RFC 3339 UTC with Z'
    when r ->> 'kind' = 'live_counts'
         and (public.bridge_utc(r ->> 'period_end') <> public.bridge_utc(r ->> 'period_start', true)
              or r -> 'final' <> 'true'::jsonb)
      then 'live_counts: a snapshot needs period_start == period_end and final true'
    else public.bridge_values_error(r ->> 'kind', r -> 'values')
  end
$$;
