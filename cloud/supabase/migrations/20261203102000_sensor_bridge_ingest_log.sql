-- sensor-bridge: data collection is on the record (issue 24; the seed: "log
-- all data collection activities").
--
-- Every ingest batch and heartbeat the cloud takes is logged in the same
-- transaction that takes it: bridge, kind, batch id, received at, and for a
-- batch how many readings were new, a newer revision, unchanged (the same or
-- a lower revision: a re-send) or refused, with the refused ids and reasons
-- (the first 50, and how many more). A batch or heartbeat refused whole
-- (400, 401, 413, 429, 503) is not taken, so it is not logged here: the route
-- answered it and the bridge keeps or splits it (docs/ingest-contract.md).
--
-- Retention: bridge_ingest_log_settings.keep_days (default 90, 1..3650), set
-- by an admin on the fleet page or with `cloud/bin/bridges ingest-log keep
-- DAYS`. Old rows go in bounded deletes (prune_bridge_ingest_log): ten at
-- each logged batch or heartbeat, and thousands at each alert cron run, each
-- delete skipping rows another session holds, so pruning never makes the
-- ingest path wait.
--
-- On an existing database: adds two tables and replaces ingest_bridge_batch
-- and record_bridge_heartbeat (same arguments, same answers, one log row
-- more). Idempotent: run twice, the second run changes nothing.

create table if not exists public.bridge_ingest_log (
  id             bigint generated always as identity primary key,
  bridge_id      text not null references public.bridges (id) on delete cascade,
  kind           text not null check (kind in ('batch', 'heartbeat')),
  received_at    timestamptz not null default now(),
  batch_id       text,                         -- a batch's batch_id (null for heartbeats)
  state          text,                         -- a heartbeat's state (null for batches)
  records        int not null default 0,       -- records in the batch as sent
  new_readings   int not null default 0,       -- ids this bridge had never sent
  newer_revision int not null default 0,       -- ids stored before, replaced by a higher revision
  unchanged      int not null default 0,       -- ids already held at the same or a higher revision
  refused        int not null default 0,       -- records refused (in the answer's "rejected")
  refused_ids    jsonb not null default '[]',  -- the first 50 refused: [{"id", "error"}]
  refused_more   int not null default 0        -- refused records beyond those 50
);

comment on table public.bridge_ingest_log is
  'sensor-bridge: every ingest batch and heartbeat taken, with what it changed; pruned after keep_days';

-- a bridge's log, newest first (the fleet page, `bridges ingest-log BRIDGE`)
create index if not exists bridge_ingest_log_bridge_newest on public.bridge_ingest_log (bridge_id, id);
-- pruning: the oldest rows of all bridges
create index if not exists bridge_ingest_log_received on public.bridge_ingest_log (received_at);

create table if not exists public.bridge_ingest_log_settings (
  only_row   boolean primary key default true check (only_row),
  keep_days  int not null default 90 check (keep_days between 1 and 3650),
  changed_by text,
  changed_at timestamptz
);
insert into public.bridge_ingest_log_settings (only_row) values (true) on conflict do nothing;

-- ---------------------------------------------------------------------------
-- prune_bridge_ingest_log: delete at most p_limit rows older than keep_days,
-- oldest first, skipping rows another session has locked. Returns how many.
-- ---------------------------------------------------------------------------
create or replace function public.prune_bridge_ingest_log(p_limit int default 5000)
returns int
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_cutoff timestamptz;
  v_gone   int;
begin
  select now() - make_interval(days => s.keep_days) into v_cutoff
  from public.bridge_ingest_log_settings s;
  v_cutoff := coalesce(v_cutoff, now() - interval '90 days');
  delete from public.bridge_ingest_log l
   where l.id in (select o.id from public.bridge_ingest_log o
                   where o.received_at < v_cutoff
                   order by o.received_at
                   limit greatest(p_limit, 0)
                   for update skip locked);
  get diagnostics v_gone = row_count;
  return v_gone;
end
$$;

-- ---------------------------------------------------------------------------
-- set_bridge_ingest_log_keep: the retention in days (1..3650), and who set it.
-- ---------------------------------------------------------------------------
create or replace function public.set_bridge_ingest_log_keep(p_days int, p_by text, p_source text default '')
returns int
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_before int;
begin
  if p_days is null or p_days < 1 or p_days > 3650 then
    raise exception using errcode = '22023',
      message = 'keep_days: a whole number of days from 1 to 3650 (got ' || coalesce(p_days::text, 'nothing') || ')';
  end if;
  select keep_days into v_before from public.bridge_ingest_log_settings;
  insert into public.bridge_ingest_log_settings as s (only_row, keep_days, changed_by, changed_at)
  values (true, p_days, left(p_by, 200), now())
  on conflict (only_row) do update
    set keep_days = excluded.keep_days, changed_by = excluded.changed_by, changed_at = excluded.changed_at;
  -- a fleet-wide setting an admin changed: on the record like every other change
  perform public.fleet_audit_record(p_by, p_source, 'ingest-log keep', null,
                                    jsonb_build_object('before', coalesce(v_before, 90), 'after', p_days));
  return p_days;
end
$$;

-- ---------------------------------------------------------------------------
-- ingest_bridge_batch: the readings-per-bridge migration's function, plus its
-- log row. Returns {"accepted": [ids], "rejected": [{"id", "error"}], "changed": n}.
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
  v_new     int;
  v_newer   int;
  v_valid   int;
  v_refused jsonb;
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
    -- xmax is 0 on a row this statement inserted, set on one it updated (a newer revision)
    returning cur.id, cur.sensor_id, cur.kind, cur.period_end, cur.final, (cur.xmax = 0) as inserted
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
           'changed', (select count(*) from written)),
         (select count(*) from written w where w.inserted),
         (select count(*) from written w where not w.inserted),
         (select count(*) from valid),
         coalesce(jsonb_agg(jsonb_build_object('id', i.r ->> 'id', 'error', i.error) order by i.n)
                    filter (where i.error is not null), '[]'::jsonb)
    into v_result, v_new, v_newer, v_valid, v_refused
  from input i;

  -- On the record (bridge_ingest_log), in this transaction: a batch is logged
  -- exactly when it is taken. Counts are per distinct reading id.
  insert into public.bridge_ingest_log
    (bridge_id, kind, batch_id, records, new_readings, newer_revision, unchanged, refused, refused_ids, refused_more)
  values (p_bridge_id, 'batch', left(p_batch ->> 'batch_id', 200), jsonb_array_length(v_records),
          v_new, v_newer, v_valid - v_new - v_newer, jsonb_array_length(v_refused),
          coalesce((select jsonb_agg(e order by n) from jsonb_array_elements(v_refused) with ordinality as x(e, n)
                     where n <= 50), '[]'::jsonb),
          greatest(jsonb_array_length(v_refused) - 50, 0));
  perform public.prune_bridge_ingest_log(10);
  return v_result;
end
$$;

-- ---------------------------------------------------------------------------
-- record_bridge_heartbeat: the first migration's function, plus its log row.
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
  insert into public.bridge_ingest_log (bridge_id, kind, state)
  values (p_bridge_id, 'heartbeat', left(p_body ->> 'state', 32));
  perform public.prune_bridge_ingest_log(10);
  return v_at;
end
$$;

alter table public.bridge_ingest_log enable row level security;
alter table public.bridge_ingest_log_settings enable row level security;

revoke all on table public.bridge_ingest_log, public.bridge_ingest_log_settings from public, anon, authenticated;
grant select, insert, update, delete on table public.bridge_ingest_log, public.bridge_ingest_log_settings
  to service_role;
grant select on table public.bridge_ingest_log, public.bridge_ingest_log_settings to authenticated;

drop policy if exists bridge_ingest_log_service_role on public.bridge_ingest_log;
create policy bridge_ingest_log_service_role on public.bridge_ingest_log
  for all to service_role using (true) with check (true);
drop policy if exists bridge_ingest_log_settings_service_role on public.bridge_ingest_log_settings;
create policy bridge_ingest_log_settings_service_role on public.bridge_ingest_log_settings
  for all to service_role using (true) with check (true);
drop policy if exists bridge_ingest_log_readers on public.bridge_ingest_log;
create policy bridge_ingest_log_readers on public.bridge_ingest_log
  for select to authenticated using (public.bridge_reader_can_see(bridge_id));
drop policy if exists bridge_ingest_log_settings_readers on public.bridge_ingest_log_settings;
create policy bridge_ingest_log_settings_readers on public.bridge_ingest_log_settings
  for select to authenticated using (true);

revoke all on function public.ingest_bridge_batch(text, jsonb) from public, anon, authenticated;
revoke all on function public.record_bridge_heartbeat(text, jsonb) from public, anon, authenticated;
revoke all on function public.prune_bridge_ingest_log(int) from public, anon, authenticated;
revoke all on function public.set_bridge_ingest_log_keep(int, text, text) from public, anon, authenticated;
grant execute on function public.ingest_bridge_batch(text, jsonb) to service_role;
grant execute on function public.record_bridge_heartbeat(text, jsonb) to service_role;
grant execute on function public.prune_bridge_ingest_log(int) to service_role;
grant execute on function public.set_bridge_ingest_log_keep(int, text, text) to service_role;
