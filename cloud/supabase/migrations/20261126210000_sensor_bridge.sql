-- sensor-bridge: the receiving side of ingest contract v1.
--
-- Creates the bridges (one per appliance, with the hash of its API key), the
-- readings they deliver, a small per-sensor activity table for staleness
-- alerts, the set-based function the ingest route calls once per batch, the
-- heartbeat store, the "what is stale" functions, and row-level security.
--
-- Plain PostgreSQL 15+, as Supabase runs it. It also applies on a bare
-- cluster that lacks Supabase's roles, and it can be applied again over itself
-- (psql users do that by accident; nothing is dropped or duplicated).
--
-- The wire contract lives in docs/ingest-contract.md; every rule the
-- validation below enforces comes from there. A receiver "stores each record
-- by id, keeping the highest revision; replaying a batch changes nothing".

-- ---------------------------------------------------------------------------
-- Roles. Supabase has these; a plain cluster (tests, self-hosting) does not.
-- They are created without LOGIN: a real login role is granted membership.
-- ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

-- One row per appliance. Its id is the appliance's config `bridge.id`
-- (default: the hostname). Only a SHA-256 of the API key is kept: the keys
-- are 256-bit random strings made by cloud/bin/add-bridge, so there is no
-- dictionary to attack and a slow password hash (bcrypt, argon2) would only
-- add latency to every request without adding safety.
create table if not exists public.bridges (
  id                text primary key
                    check (id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
  api_key_sha256    text not null check (api_key_sha256 ~ '^[0-9a-f]{64}$'),
  label             text not null default '',
  created_at        timestamptz not null default now(),
  -- set to refuse the bridge's key without losing its readings
  disabled_at       timestamptz,
  -- server time of the last heartbeat (the Pi's own clock may be wrong) and
  -- its body as sent: state, outbox counters, per-sensor state, host figures
  last_heartbeat_at timestamptz,
  last_heartbeat    jsonb
);

-- The records of the contract, one row per id (sensor + kind + period).
-- "values" is quoted because VALUES is an SQL keyword; the name is the
-- contract's, so API clients see the field they expect.
create table if not exists public.bridge_readings (
  id           text primary key check (id ~ '^[0-9a-f]{64}$'),
  sensor_id    text not null,
  kind         text not null
               check (kind in ('line_counts', 'region_counts', 'live_counts', 'occupancy', 'event')),
  period_start timestamptz not null,
  period_end   timestamptz not null,
  final        boolean not null,
  revision     bigint not null check (revision >= 1),
  source       text not null check (source in ('poll', 'mqtt', 'http-push')),
  observed_at  timestamptz not null,
  "values"     jsonb not null,
  bridge_id    text not null references public.bridges (id),
  -- when this revision arrived; bumped by every newer revision so that
  -- "everything since T" also returns corrected periods
  received_at  timestamptz not null default now(),
  check (period_end >= period_start)
);

-- "one sensor over a time range" (optionally of one kind)
create index if not exists bridge_readings_sensor_period
  on public.bridge_readings (sensor_id, kind, period_start);
-- "everything since" (incremental exports, dashboards refreshing)
create index if not exists bridge_readings_received
  on public.bridge_readings (received_at);

-- What each bridge last delivered per sensor and kind, maintained by
-- ingest_bridge_batch from the rows it actually wrote. It keeps the stale
-- sensor check O(sensors) instead of a scan over every reading ever stored.
create table if not exists public.bridge_sensors (
  bridge_id             text not null references public.bridges (id) on delete cascade,
  sensor_id             text not null,
  kind                  text not null,
  first_seen_at         timestamptz not null default now(),
  last_received_at      timestamptz not null default now(),
  last_period_end       timestamptz,
  last_final_period_end timestamptz,
  primary key (bridge_id, sensor_id, kind)
);

comment on table public.bridges is 'sensor-bridge appliances allowed to deliver readings (cloud/bin/add-bridge)';
comment on table public.bridge_readings is 'sensor-bridge records (ingest contract v1), one row per id, highest revision kept';
comment on table public.bridge_sensors is 'last delivery per bridge, sensor and kind; feeds stale_bridge_sensors()';

-- ---------------------------------------------------------------------------
-- Validation helpers. Pure SQL without SET clauses so that the planner can
-- inline the small ones into the ingest statement; each returns false/null
-- instead of raising, because one bad record must not fail its whole batch.
-- CASE (not AND/OR) guards every cast: only CASE fixes evaluation order.
-- ---------------------------------------------------------------------------

-- A JSON integer >= 0 written without a fraction (1, not 1.0: a reader's
-- `(values->>'in')::int` must not fail), within bigint range.
create or replace function public.bridge_json_is_count(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select case when jsonb_typeof(j) = 'number'
              then j::numeric >= 0 and scale(j::numeric) = 0 and j::numeric <= 9223372036854775807
              else false end
$$;

-- {"in": count, "out": count} and nothing else
create or replace function public.bridge_json_is_in_out(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select case when jsonb_typeof(j) = 'object'
              then (j - '{in,out}'::text[]) = '{}'::jsonb
                   and public.bridge_json_is_count(j -> 'in')
                   and public.bridge_json_is_count(j -> 'out')
              else false end
$$;

-- {"<name>": count, ...}: regions
create or replace function public.bridge_json_is_count_map(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select case when jsonb_typeof(j) = 'object'
              then not exists (select 1 from jsonb_each(j) e
                               where e.key = '' or not public.bridge_json_is_count(e.value))
              else false end
$$;

-- {"<name>": {"in": count, "out": count}, ...}: counting lines
create or replace function public.bridge_json_is_in_out_map(j jsonb)
returns boolean language sql immutable parallel safe as $$
  select case when jsonb_typeof(j) = 'object'
              then not exists (select 1 from jsonb_each(j) e
                               where e.key = '' or not public.bridge_json_is_in_out(e.value))
              else false end
$$;

-- The instant an RFC 3339 UTC text names, or null unless it is exactly
-- YYYY-MM-DDTHH:MM:SS[.fraction]Z on a real calendar day. whole_seconds
-- forbids the fraction (period_start is part of the record id, so the
-- contract fixes it to second precision). Offsets other than Z are refused:
-- the contract says UTC with a Z suffix.
create or replace function public.bridge_utc(t text, whole_seconds boolean default false)
returns timestamptz language sql stable parallel safe as $$
  select case
    when t !~ case when whole_seconds
                   then '^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$'
                   else '^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$'
              end
      then null
    when substr(t, 1, 4)::int < 1 or substr(t, 6, 2)::int not between 1 and 12
      then null
    when substr(t, 9, 2)::int not between 1 and extract(day from
           make_date(substr(t, 1, 4)::int, substr(t, 6, 2)::int, 1) + interval '1 month' - interval '1 day')::int
      then null
    else t::timestamptz
  end
$$;

-- Why `values` does not fit its kind (contract: "Kinds and their values"),
-- or null when it does. Keys are exact: an unknown key is a contract bug.
create or replace function public.bridge_values_error(kind text, v jsonb)
returns text language sql immutable parallel safe as $$
  select case
    when jsonb_typeof(v) is distinct from 'object' then 'values: must be an object'
    when kind = 'line_counts' then case
      when (v - '{total,lines}'::text[]) <> '{}'::jsonb or not v ?& '{total,lines}'::text[]
        then 'values: line_counts needs exactly the keys total and lines'
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
      when (v - '{current_total,max,regions}'::text[]) <> '{}'::jsonb
           or not v ?& '{current_total,max,regions}'::text[]
        then 'values: occupancy needs exactly the keys current_total, max and regions'
      when not public.bridge_json_is_count(v -> 'current_total')
        then 'values.current_total: must be an int >= 0'
      when jsonb_typeof(v -> 'max') <> 'null' and not public.bridge_json_is_count(v -> 'max')
        then 'values.max: must be an int >= 0 or null'
      when not public.bridge_json_is_count_map(v -> 'regions')
        then 'values.regions: must map each region to an int >= 0'
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
         or r ->> 'kind' not in ('line_counts', 'region_counts', 'live_counts', 'occupancy', 'event')
      then 'kind: must be one of line_counts, region_counts, live_counts, occupancy, event'
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

-- Why a heartbeat body breaks the contract, or null when it is valid.
create or replace function public.bridge_heartbeat_error(b jsonb)
returns text language sql stable parallel safe as $$
  select case
    when jsonb_typeof(b) is distinct from 'object' then 'heartbeat: must be a JSON object'
    when (b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host}'::text[]) <> '{}'::jsonb
      then 'heartbeat: unknown key(s) ' || jsonb_path_query_array(
             b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host}'::text[],
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
  end
$$;

-- ---------------------------------------------------------------------------
-- ingest_bridge_batch: the whole batch in one set-based statement.
--
-- Returns {"accepted": [ids], "rejected": [{"id", "error"}], "changed": n}.
-- accepted = valid records, whether they changed a row or were a replay or an
-- older revision of a stored one (the appliance may forget those). changed =
-- rows inserted or updated. Errors in the envelope (not in one record) raise
-- SQLSTATE 22023 so the route answers 400; an unknown or disabled bridge
-- raises 28000 (401).
--
-- Concurrency: rows are written in id order, so two batches that overlap take
-- their row locks in the same order and cannot deadlock. A concurrent writer
-- of the same id is resolved by ON CONFLICT after it commits; the rare id
-- that neither this statement wrote nor its snapshot saw is looked up again
-- afterwards (a fresh snapshot) instead of guessing.
-- ---------------------------------------------------------------------------
create or replace function public.ingest_bridge_batch(p_bridge_id text, p_batch jsonb)
returns jsonb
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_records jsonb := p_batch -> 'records';
  v_unknown jsonb;
  v_result  jsonb;
  v_pending text[];
  v_late    jsonb;
begin
  if jsonb_typeof(p_batch) is distinct from 'object' then
    raise exception using errcode = '22023', message = 'batch: must be a JSON object';
  end if;
  v_unknown := jsonb_path_query_array(p_batch - '{schema,bridge_id,batch_id,sent_at,records}'::text[],
                                      '$.keyvalue().key');
  if v_unknown <> '[]'::jsonb then
    raise exception using errcode = '22023', message = 'batch: unknown key(s) ' || v_unknown::text;
  end if;
  if p_batch -> 'schema' is distinct from '"sensor-bridge/ingest/v1"'::jsonb then
    raise exception using errcode = '22023', message = 'schema: must be "sensor-bridge/ingest/v1"';
  end if;
  if p_batch -> 'bridge_id' is distinct from to_jsonb(p_bridge_id) then
    raise exception using errcode = '22023', message = 'bridge_id: does not match the authenticated bridge';
  end if;
  if jsonb_typeof(p_batch -> 'batch_id') is distinct from 'string' or p_batch ->> 'batch_id' = '' then
    raise exception using errcode = '22023', message = 'batch_id: must be a non-empty string';
  end if;
  if jsonb_typeof(p_batch -> 'sent_at') is distinct from 'string'
     or public.bridge_utc(p_batch ->> 'sent_at') is null then
    raise exception using errcode = '22023', message = 'sent_at: must be RFC 3339 UTC with Z';
  end if;
  if jsonb_typeof(v_records) is distinct from 'array' or jsonb_array_length(v_records) = 0 then
    raise exception using errcode = '22023', message = 'records: must be a non-empty array';
  end if;
  if jsonb_array_length(v_records) > 10000 then
    -- 54000 program_limit_exceeded: the route answers 413 and the appliance halves the batch
    raise exception using errcode = '54000', message = 'records: more than 10000 in one batch';
  end if;
  -- A record without a string id cannot be named in "rejected", so the appliance
  -- could neither delete nor dead-letter it: call the batch malformed (400) and
  -- let the appliance split it down to that record.
  if exists (select 1 from jsonb_array_elements(v_records) r where jsonb_typeof(r -> 'id') is distinct from 'string') then
    raise exception using errcode = '22023', message = 'records: every record needs a string id';
  end if;
  if not exists (select 1 from public.bridges b where b.id = p_bridge_id and b.disabled_at is null) then
    raise exception using errcode = '28000', message = 'bridge: unknown or disabled';
  end if;

  with input as (
    select t.r, t.n, public.bridge_record_error(t.r) as error
    from jsonb_array_elements(v_records) with ordinality as t(r, n)
  ),
  -- one row per id: the highest revision in the batch (the latest send on a tie)
  valid as (
    select distinct on (r ->> 'id')
           r ->> 'id' as id, r ->> 'sensor_id' as sensor_id, r ->> 'kind' as kind,
           (r ->> 'period_start')::timestamptz as period_start,
           (r ->> 'period_end')::timestamptz as period_end,
           (r ->> 'final')::boolean as final,
           (r ->> 'revision')::bigint as revision,
           r ->> 'source' as source,
           (r ->> 'observed_at')::timestamptz as observed_at,
           r -> 'values' as vals
    from input
    where error is null
    order by r ->> 'id', (r ->> 'revision')::bigint desc, n desc
  ),
  written as (
    insert into public.bridge_readings as cur
      (id, sensor_id, kind, period_start, period_end, final, revision, source, observed_at,
       "values", bridge_id, received_at)
    select id, sensor_id, kind, period_start, period_end, final, revision, source, observed_at,
           vals, p_bridge_id, now()
    from valid
    order by id
    on conflict (id) do update
      set period_end  = excluded.period_end,
          final       = excluded.final,
          revision    = excluded.revision,
          source      = excluded.source,
          observed_at = excluded.observed_at,
          "values"    = excluded."values",
          received_at = excluded.received_at
      -- only a higher revision from the same bridge replaces a row: a replay or
      -- an older revision is a no-op, and no bridge can overwrite another's data
      where cur.revision < excluded.revision and cur.bridge_id = excluded.bridge_id
    returning cur.id, cur.sensor_id, cur.kind, cur.period_end, cur.final
  ),
  activity as (
    insert into public.bridge_sensors as s
      (bridge_id, sensor_id, kind, last_received_at, last_period_end, last_final_period_end)
    select p_bridge_id, w.sensor_id, w.kind, now(), max(w.period_end), max(w.period_end) filter (where w.final)
    from written w
    group by w.sensor_id, w.kind
    order by w.sensor_id, w.kind
    on conflict (bridge_id, sensor_id, kind) do update
      set last_received_at      = excluded.last_received_at,
          last_period_end       = greatest(s.last_period_end, excluded.last_period_end),
          last_final_period_end = greatest(s.last_final_period_end, excluded.last_final_period_end)
    returning 1
  ),
  outcome as (
    -- `old` is this statement's snapshot, i.e. the rows as they were before it
    select i.n, i.r ->> 'id' as id,
           case
             when i.error is not null then i.error
             when w.id is not null then null
             when old.id is null then null
             when old.bridge_id <> p_bridge_id
               then 'id: already stored for another bridge (sensor ids must be unique across bridges)'
           end as error,
           i.error is null and w.id is null and old.id is null as pending
    from input i
    left join written w on w.id = i.r ->> 'id'
    left join public.bridge_readings old on old.id = i.r ->> 'id'
  )
  select jsonb_build_object(
           'accepted', coalesce(jsonb_agg(to_jsonb(o.id) order by o.n)
                                  filter (where o.error is null and not o.pending), '[]'::jsonb),
           'rejected', coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'error', o.error) order by o.n)
                                  filter (where o.error is not null), '[]'::jsonb),
           'changed', (select count(*) from written)),
         array_agg(o.id) filter (where o.pending)
    into v_result, v_pending
  from outcome o;

  if v_pending is not null then
    -- Written by a concurrent transaction after this statement's snapshot was
    -- taken; that transaction has committed (ON CONFLICT waited for it), so a
    -- new statement sees who owns the row now.
    if exists (select 1 from unnest(v_pending) p(id)
               where not exists (select 1 from public.bridge_readings b where b.id = p.id)) then
      raise exception using errcode = '40001', message = 'a concurrent change removed a reading; retry the batch';
    end if;
    select jsonb_build_object(
             'accepted', coalesce(jsonb_agg(to_jsonb(b.id)) filter (where b.bridge_id = p_bridge_id), '[]'::jsonb),
             'rejected', coalesce(jsonb_agg(jsonb_build_object('id', b.id, 'error',
                           'id: already stored for another bridge (sensor ids must be unique across bridges)'))
                           filter (where b.bridge_id <> p_bridge_id), '[]'::jsonb))
      into v_late
    from unnest(v_pending) p(id) join public.bridge_readings b on b.id = p.id;
    v_result := jsonb_set(jsonb_set(v_result,
                  '{accepted}', (v_result -> 'accepted') || (v_late -> 'accepted')),
                  '{rejected}', (v_result -> 'rejected') || (v_late -> 'rejected'));
  end if;
  return v_result;
end
$$;

-- ---------------------------------------------------------------------------
-- record_bridge_heartbeat: validate and keep the latest heartbeat of a bridge.
-- Returns the server time stored as last_heartbeat_at.
-- ---------------------------------------------------------------------------
create or replace function public.record_bridge_heartbeat(p_bridge_id text, p_body jsonb)
returns timestamptz
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_error text := public.bridge_heartbeat_error(p_body);
  v_at    timestamptz;
begin
  if v_error is not null then
    raise exception using errcode = '22023', message = v_error;
  end if;
  if p_body ->> 'bridge_id' <> p_bridge_id then
    raise exception using errcode = '22023', message = 'bridge_id: does not match the authenticated bridge';
  end if;
  update public.bridges
     set last_heartbeat_at = now(), last_heartbeat = p_body
   where id = p_bridge_id and disabled_at is null
  returning last_heartbeat_at into v_at;
  if not found then
    raise exception using errcode = '28000', message = 'bridge: unknown or disabled';
  end if;
  return v_at;
end
$$;

-- ---------------------------------------------------------------------------
-- Staleness, for alerts (a Vercel cron, a monitor polling the stale route, or
-- a dashboard). Disabled bridges are never reported.
-- ---------------------------------------------------------------------------

-- Bridges whose last heartbeat (or, never having sent one, whose creation) is
-- older than the threshold. last_state is what the bridge said about itself.
create or replace function public.stale_bridges(older_than interval default interval '5 minutes')
returns table (bridge_id text, label text, last_heartbeat_at timestamptz, silent_for interval, last_state text)
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select b.id, b.label, b.last_heartbeat_at,
         now() - coalesce(b.last_heartbeat_at, b.created_at),
         b.last_heartbeat ->> 'state'
  from public.bridges b
  where b.disabled_at is null
    and coalesce(b.last_heartbeat_at, b.created_at) < now() - older_than
  order by 4 desc, 1
$$;

-- Sensors (per bridge and kind) with no final period ending within the
-- threshold. Measured on the data's own time, not on arrival: a bridge
-- replaying last week's backlog is still behind until it catches up. live
-- snapshots and events are left out by default: they say a sensor answers,
-- not that its counting periods are arriving.
create or replace function public.stale_bridge_sensors(
  older_than interval default interval '2 hours',
  kinds text[] default '{line_counts,region_counts,occupancy}')
returns table (bridge_id text, sensor_id text, kind text, last_final_period_end timestamptz,
               last_received_at timestamptz, stale_for interval)
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select s.bridge_id, s.sensor_id, s.kind, s.last_final_period_end, s.last_received_at,
         now() - coalesce(s.last_final_period_end, s.first_seen_at)
  from public.bridge_sensors s
  join public.bridges b on b.id = s.bridge_id and b.disabled_at is null
  where s.kind = any (kinds)
    and coalesce(s.last_final_period_end, s.first_seen_at) < now() - older_than
  order by 6 desc, 1, 2, 3
$$;

-- ---------------------------------------------------------------------------
-- Row-level security
--
-- Writers: only service_role (the API routes; on Supabase it also bypasses
-- RLS) and the tables' owner. Readers: `authenticated`, through one hook.
-- ---------------------------------------------------------------------------

-- The one place that decides which bridges a signed-in reader may see. As
-- shipped every signed-in user sees every bridge (one organisation). If the
-- app's tables have organisations, replace the body with a join to them, e.g.
--
--   select exists (
--     select 1
--     from public.stores s                                  -- the app's table
--     join public.organization_members m on m.organization_id = s.organization_id
--     where s.bridge_id = p_bridge_id                       -- stores.bridge_id -> bridges.id
--       and m.user_id = auth.uid())                         -- Supabase's current user
--
-- (make it `security definer` if those tables have RLS of their own).
create or replace function public.bridge_reader_can_see(p_bridge_id text)
returns boolean language sql stable as $$
  select true
$$;

alter table public.bridges enable row level security;
alter table public.bridge_readings enable row level security;
alter table public.bridge_sensors enable row level security;

-- Supabase grants everything on new public tables to anon and authenticated
-- by default; take that back and hand out exactly what each role needs.
revoke all on table public.bridges, public.bridge_readings, public.bridge_sensors
  from public, anon, authenticated;
grant select, insert, update, delete on table public.bridges, public.bridge_readings, public.bridge_sensors
  to service_role;
-- readers never see the key hash
grant select (id, label, created_at, disabled_at, last_heartbeat_at, last_heartbeat)
  on table public.bridges to authenticated;
grant select on table public.bridge_readings, public.bridge_sensors to authenticated;

drop policy if exists bridges_service_role on public.bridges;
create policy bridges_service_role on public.bridges
  for all to service_role using (true) with check (true);
drop policy if exists bridge_readings_service_role on public.bridge_readings;
create policy bridge_readings_service_role on public.bridge_readings
  for all to service_role using (true) with check (true);
drop policy if exists bridge_sensors_service_role on public.bridge_sensors;
create policy bridge_sensors_service_role on public.bridge_sensors
  for all to service_role using (true) with check (true);

drop policy if exists bridges_readers on public.bridges;
create policy bridges_readers on public.bridges
  for select to authenticated using (public.bridge_reader_can_see(id));
drop policy if exists bridge_readings_readers on public.bridge_readings;
create policy bridge_readings_readers on public.bridge_readings
  for select to authenticated using (public.bridge_reader_can_see(bridge_id));
drop policy if exists bridge_sensors_readers on public.bridge_sensors;
create policy bridge_sensors_readers on public.bridge_sensors
  for select to authenticated using (public.bridge_reader_can_see(bridge_id));

-- Writing functions: service_role only (they run with the caller's rights,
-- so RLS and the grants above still apply inside them).
revoke all on function public.ingest_bridge_batch(text, jsonb) from public, anon, authenticated;
revoke all on function public.record_bridge_heartbeat(text, jsonb) from public, anon, authenticated;
grant execute on function public.ingest_bridge_batch(text, jsonb) to service_role;
grant execute on function public.record_bridge_heartbeat(text, jsonb) to service_role;
-- Staleness: readers may ask too (RLS limits what they see).
revoke all on function public.stale_bridges(interval) from public, anon;
revoke all on function public.stale_bridge_sensors(interval, text[]) from public, anon;
grant execute on function public.stale_bridges(interval) to authenticated, service_role;
grant execute on function public.stale_bridge_sensors(interval, text[]) to authenticated, service_role;
