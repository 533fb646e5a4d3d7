-- sensor-bridge: sensor ids belong to their bridge.
--
-- Every store may call its door `entrance-1`. A reading's id is
-- sha256(sensor_id|kind|period_start), computed on the bridge without the
-- bridge's id, so two stores' `entrance-1` readings of the same hour carry
-- the same id. Until this migration the cloud keyed bridge_readings by id
-- alone and refused the second store's readings ("already stored for another
-- bridge"). From here on a reading is keyed by (bridge_id, id): the same
-- bridge sending the same id again is the same reading (highest revision
-- kept, a replay changes nothing); another bridge sending that id is another
-- reading. Bridges in the field need no change: they already send their
-- bridge_id in every batch, and the authenticated key must match it.
--
-- On an existing database (docs/ingest-contract.md, "Migrating a database"):
--   * bridge_readings' primary key becomes (bridge_id, id); every row keeps
--     its id and values (no row is rewritten; the key's index is rebuilt, which
--     holds a lock on the table for as long as that takes: run it off hours
--     on a large table);
--   * the index for "one sensor over a time range" gains the bridge in front;
--   * ingest_bridge_batch upserts on (bridge_id, id) and no longer refuses an
--     id another bridge has stored.
-- Idempotent: run twice, the second run changes nothing.

do $$
begin
  -- only while the primary key is still the id alone
  if exists (select 1 from pg_constraint c
             where c.conrelid = 'public.bridge_readings'::regclass and c.contype = 'p'
               and c.conkey = array[(select a.attnum from pg_attribute a
                                     where a.attrelid = 'public.bridge_readings'::regclass
                                       and a.attname = 'id')]::int2[]) then
    alter table public.bridge_readings drop constraint bridge_readings_pkey;
    alter table public.bridge_readings add constraint bridge_readings_pkey primary key (bridge_id, id);
  end if;
end
$$;

-- "one sensor of one bridge over a time range" (the fleet page's chart)
create index if not exists bridge_readings_bridge_sensor_period
  on public.bridge_readings (bridge_id, sensor_id, kind, period_start);
drop index if exists public.bridge_readings_sensor_period;

comment on table public.bridge_readings is
  'sensor-bridge records (ingest contract v1), one row per bridge and id, highest revision kept';

-- ---------------------------------------------------------------------------
-- ingest_bridge_batch: the first migration's function, keyed by bridge and id.
-- Returns {"accepted": [ids], "rejected": [{"id", "error"}], "changed": n}.
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
    -- the bridge's own reading of that id, if it has one: another bridge's
    -- reading with the same id is another row, never touched from here
    on conflict (bridge_id, id) do update
      set period_end  = excluded.period_end,
          final       = excluded.final,
          revision    = excluded.revision,
          source      = excluded.source,
          observed_at = excluded.observed_at,
          "values"    = excluded."values",
          received_at = excluded.received_at
      -- only a higher revision replaces a row: a replay or an older revision is a no-op
      where cur.revision < excluded.revision
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
  )
  -- (activity runs although nothing reads it: PostgreSQL always completes a
  -- data-modifying WITH.) Every valid record is accepted: written now, or already held by this
  -- bridge at the same or a higher revision (ON CONFLICT waited for any
  -- concurrent batch of this bridge that wrote it, so it is stored).
  select jsonb_build_object(
           'accepted', coalesce(jsonb_agg(to_jsonb(i.r ->> 'id') order by i.n)
                                  filter (where i.error is null), '[]'::jsonb),
           'rejected', coalesce(jsonb_agg(jsonb_build_object('id', i.r ->> 'id', 'error', i.error) order by i.n)
                                  filter (where i.error is not null), '[]'::jsonb),
           'changed', (select count(*) from written))
    into v_result
  from input i;
  return v_result;
end
$$;

revoke all on function public.ingest_bridge_batch(text, jsonb) from public, anon, authenticated;
grant execute on function public.ingest_bridge_batch(text, jsonb) to service_role;
