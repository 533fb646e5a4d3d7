-- sensor-bridge alerts: a person hears about a dark store within minutes.
--
-- Adds, on top of 20261126210000_sensor_bridge.sql:
--   * bridges.timezone (alert times in the store's zone) and
--     bridges.last_dropped_at (when the bridge last reported shed readings);
--   * bridge_retired_sensors: sensors that alerts and stale checks skip (their
--     readings stay); a retired bridge is one with disabled_at set;
--   * bridge_alert_conditions(): what is wrong right now, fleet-wide;
--   * bridge_alert_incidents: one row per problem from when it opens until it
--     closes, and bridge_alert_deliveries: which channel was told what, so
--     each incident is announced once when it opens and once when it closes;
--   * bridge_alert_channels: a channel's back-off (Telegram's retry_after).
--
-- The cron route (nextjs/lib/bridge/alerts.ts) calls bridge_alerts_refresh()
-- and sends what bridge_alert_pending() lists inside one transaction that
-- holds a transaction-level advisory lock, so two runs at once send one
-- message, not two. Idempotent like the first migration.

alter table public.bridges add column if not exists timezone text;
alter table public.bridges add column if not exists last_dropped_at timestamptz;
comment on column public.bridges.timezone is 'IANA zone of the store, for alert messages (cloud/bin/bridges set-timezone); null = UTC';
comment on column public.bridges.last_dropped_at is 'server time of the last heartbeat whose outbox.dropped grew';

create table if not exists public.bridge_retired_sensors (
  bridge_id  text not null references public.bridges (id) on delete cascade,
  sensor_id  text not null,
  retired_at timestamptz not null default now(),
  primary key (bridge_id, sensor_id)
);

create table if not exists public.bridge_alert_incidents (
  id                bigint generated always as identity primary key,
  what              text not null check (what in
                      ('bridge_silent', 'bridge_error', 'sensor_failing', 'sensor_silent', 'readings_dropped')),
  bridge_id         text not null references public.bridges (id) on delete cascade,
  -- '' for a whole-bridge incident, so that the one-open-incident index below applies
  sensor_id         text not null default '',
  -- when the problem began as far as the cloud can tell (e.g. the last heartbeat)
  opened_at         timestamptz not null,
  detected_at       timestamptz not null default now(),
  detail            text not null default '',
  -- every configured channel has been told it opened / closed
  notified_at       timestamptz,
  closed_at         timestamptz,
  close_notified_at timestamptz
);
create unique index if not exists bridge_alert_incidents_one_open
  on public.bridge_alert_incidents (what, bridge_id, sensor_id) where closed_at is null;
create index if not exists bridge_alert_incidents_unsettled
  on public.bridge_alert_incidents (id) where notified_at is null or close_notified_at is null;

create table if not exists public.bridge_alert_deliveries (
  incident_id  bigint not null references public.bridge_alert_incidents (id) on delete cascade,
  event        text not null check (event in ('opened', 'closed')),
  channel      text not null,
  delivered_at timestamptz not null default now(),
  primary key (incident_id, event, channel)
);

create table if not exists public.bridge_alert_channels (
  channel         text primary key,
  hold_until      timestamptz,
  failures        integer not null default 0,
  last_error      text,
  last_attempt_at timestamptz
);

comment on table public.bridge_retired_sensors is 'sensors that alerts and stale checks skip; their readings stay';
comment on table public.bridge_alert_incidents is 'alert incidents: one row per problem, open until its condition clears';
comment on table public.bridge_alert_deliveries is 'which channel was told that an incident opened or closed';

-- ---------------------------------------------------------------------------
-- The heartbeat already carries outbox.dropped (a running count); remember
-- when it grew, so "readings were shed" stays visible for a while after.
-- A trigger rather than a change to record_bridge_heartbeat: that function
-- stays as the first migration wrote it.
-- ---------------------------------------------------------------------------
create or replace function public.bridge_note_dropped()
returns trigger language plpgsql as $$
begin
  if coalesce((new.last_heartbeat -> 'outbox' ->> 'dropped')::numeric, 0)
     > coalesce((old.last_heartbeat -> 'outbox' ->> 'dropped')::numeric,
                (new.last_heartbeat -> 'outbox' ->> 'dropped')::numeric, 0) then
    new.last_dropped_at := coalesce(new.last_heartbeat_at, now());
  end if;
  return new;
end
$$;
drop trigger if exists bridges_note_dropped on public.bridges;
create trigger bridges_note_dropped before update of last_heartbeat on public.bridges
  for each row execute function public.bridge_note_dropped();

-- ---------------------------------------------------------------------------
-- What is wrong right now. One row per problem; `since` is when it began as
-- far as the cloud can tell. Retired bridges (disabled_at) and retired
-- sensors never appear. A bridge whose heartbeats stopped is reported as
-- silent only: its last word about its sensors is old news.
-- ---------------------------------------------------------------------------
create or replace function public.bridge_alert_conditions(
  bridge_silent  interval default interval '10 minutes',
  sensor_failing interval default interval '30 minutes',
  sensor_silent  interval default interval '3 hours',
  dropped_within interval default interval '1 hour')
returns table (what text, bridge_id text, sensor_id text, since timestamptz, detail text)
language sql stable security invoker
set search_path = public, pg_temp
as $$
  with live as (
    select b.*, coalesce(b.last_heartbeat_at, b.created_at) < now() - bridge_silent as silent
    from public.bridges b
    where b.disabled_at is null
  ),
  heard as (
    select l.*, public.bridge_utc(l.last_heartbeat ->> 'sent_at') as sent_at
    from live l where not l.silent and l.last_heartbeat is not null
  )
  select 'bridge_silent', l.id, '', coalesce(l.last_heartbeat_at, l.created_at),
         case when l.last_heartbeat_at is null then 'has never sent a heartbeat' else 'no heartbeat' end
  from live l where l.silent
  union all
  select 'bridge_error', h.id, '', h.last_heartbeat_at,
         'reports state ' || (h.last_heartbeat ->> 'state') || coalesce(': ' || (
           select string_agg(s ->> 'id' || ' ' || coalesce(s ->> 'last_error', 'failing'), '; ')
           from jsonb_array_elements(h.last_heartbeat -> 'sensors') s where s ->> 'state' = 'failing'), '')
  from heard h where h.last_heartbeat ->> 'state' in ('error', 'no-config')
  union all
  -- failing since its last success (or, none since the bridge started, since
  -- then), measured on the bridge's clock and moved onto the server's through
  -- the heartbeat's arrival, so a Pi clock that is off does not matter
  select 'sensor_failing', f.id, f.sensor_id, f.since, f.detail
  from (
    select h.id, s ->> 'id' as sensor_id, coalesce(s ->> 'last_error', 'failing') as detail,
           h.last_heartbeat_at - greatest(interval '0', h.sent_at - coalesce(
             public.bridge_utc(s ->> 'last_success'),
             h.sent_at - (h.last_heartbeat ->> 'uptime_s')::numeric * interval '1 second')) as since
    from heard h, jsonb_array_elements(h.last_heartbeat -> 'sensors') s
    where s ->> 'state' = 'failing' and h.sent_at is not null
      and not exists (select 1 from public.bridge_retired_sensors r
                      where r.bridge_id = h.id and r.sensor_id = s ->> 'id')
  ) f
  where f.since < now() - sensor_failing
  union all
  select 'sensor_silent', q.bridge_id, q.sensor_id, q.since, 'no new counting period'
  from (
    select s.bridge_id, s.sensor_id, max(coalesce(s.last_final_period_end, s.first_seen_at)) as since
    from public.bridge_sensors s
    join live l on l.id = s.bridge_id and not l.silent
    where s.kind in ('line_counts', 'region_counts', 'occupancy')
      and not exists (select 1 from public.bridge_retired_sensors r
                      where r.bridge_id = s.bridge_id and r.sensor_id = s.sensor_id)
    group by s.bridge_id, s.sensor_id
  ) q
  where q.since < now() - sensor_silent
  union all
  select 'readings_dropped', h.id, '', h.last_dropped_at,
         (h.last_heartbeat -> 'outbox' ->> 'dropped') || ' readings shed in total (outbox full)'
  from heard h where h.last_dropped_at > now() - dropped_within
$$;

-- ---------------------------------------------------------------------------
-- Open an incident for each new condition, close those whose condition
-- cleared. Incidents of a silent bridge other than its silence stay as they
-- are (nothing is known about them). One closed because its bridge or
-- sensor was retired is settled without a recovery message. Returns how many
-- incidents are open afterwards. Call it under the alert lock (the route
-- does), so two runs cannot open the same incident twice.
-- ---------------------------------------------------------------------------
create or replace function public.bridge_alerts_refresh(
  bridge_silent  interval default interval '10 minutes',
  sensor_failing interval default interval '30 minutes',
  sensor_silent  interval default interval '3 hours',
  dropped_within interval default interval '1 hour')
returns integer
language sql volatile security invoker
set search_path = public, pg_temp
as $$
  -- one statement, one snapshot: closing and opening see the same conditions
  with cond as materialized (
    select * from public.bridge_alert_conditions(bridge_silent, sensor_failing, sensor_silent, dropped_within)
  ),
  closing as (
    select i.id,
           b.disabled_at is not null or exists (
             select 1 from public.bridge_retired_sensors r
             where r.bridge_id = i.bridge_id and r.sensor_id = i.sensor_id) as retired
    from public.bridge_alert_incidents i
    join public.bridges b on b.id = i.bridge_id
    where i.closed_at is null
      and not exists (select 1 from cond c
                      where c.what = i.what and c.bridge_id = i.bridge_id and c.sensor_id = i.sensor_id)
      and not (i.what <> 'bridge_silent' and b.disabled_at is null
               and exists (select 1 from cond c where c.what = 'bridge_silent' and c.bridge_id = i.bridge_id))
  ),
  closed as (
    update public.bridge_alert_incidents i
       set closed_at = now(),
           notified_at = case when k.retired then coalesce(i.notified_at, now()) else i.notified_at end,
           close_notified_at = case when k.retired then now() end
      from closing k
     where k.id = i.id
    returning i.id
  ),
  opened as (
    insert into public.bridge_alert_incidents (what, bridge_id, sensor_id, opened_at, detail)
    select c.what, c.bridge_id, c.sensor_id, c.since, c.detail from cond c
    on conflict (what, bridge_id, sensor_id) where closed_at is null do nothing
    returning id
  )
  select ((select count(*) from public.bridge_alert_incidents where closed_at is null)
          - (select count(*) from closed) + (select count(*) from opened))::integer
$$;

-- ---------------------------------------------------------------------------
-- What each channel still has to be told: the opening of an incident it has
-- not heard of (closed ones only within a day, so a channel added later is not
-- flooded with history), and the closing of one it heard open (or hears
-- now). A channel held back by its back-off is left out.
-- ---------------------------------------------------------------------------
create or replace function public.bridge_alert_pending(channels text[])
returns table (incident_id bigint, event text, channel text, what text, bridge_id text, label text,
               timezone text, sensor_id text, opened_at timestamptz, closed_at timestamptz, detail text)
language sql stable security invoker
set search_path = public, pg_temp
as $$
  with ready as (
    select c.name as channel
    from unnest(channels) as c(name)
    where not exists (select 1 from public.bridge_alert_channels h
                      where h.channel = c.name and h.hold_until > now())
  ),
  unsettled as (
    select i.* from public.bridge_alert_incidents i
    where i.notified_at is null or (i.closed_at is not null and i.close_notified_at is null)
  ),
  events as (
    select i.id, 'opened' as event, r.channel
    from unsettled i cross join ready r
    where i.notified_at is null
      and (i.closed_at is null or i.closed_at > now() - interval '1 day')
      and (i.close_notified_at is null or i.closed_at is null)
      and not exists (select 1 from public.bridge_alert_deliveries d
                      where d.incident_id = i.id and d.event = 'opened' and d.channel = r.channel)
    union all
    select i.id, 'closed', r.channel
    from unsettled i cross join ready r
    where i.closed_at is not null and i.close_notified_at is null
      and not exists (select 1 from public.bridge_alert_deliveries d
                      where d.incident_id = i.id and d.event = 'closed' and d.channel = r.channel)
      and (exists (select 1 from public.bridge_alert_deliveries d
                   where d.incident_id = i.id and d.event = 'opened' and d.channel = r.channel)
           or (i.notified_at is null and i.closed_at > now() - interval '1 day'))
  )
  select e.id, e.event, e.channel, i.what, i.bridge_id, b.label, b.timezone, i.sensor_id,
         i.opened_at, i.closed_at, i.detail
  from events e
  join public.bridge_alert_incidents i on i.id = e.id
  join public.bridges b on b.id = i.bridge_id
  order by e.channel, e.event desc, i.what, i.opened_at, i.bridge_id, i.sensor_id
$$;

-- After a run's sends: an incident whose opening (closing) nothing still
-- waits to hear about is settled. Only called with at least one channel, so
-- incidents kept while no channel is configured are announced once one is.
create or replace function public.bridge_alerts_settle(channels text[])
returns void
language sql volatile security invoker
set search_path = public, pg_temp
as $$
  update public.bridge_alert_incidents i
     set notified_at = coalesce(i.notified_at, now())
   where i.notified_at is null
     and not exists (select 1 from unnest(channels) c(name)
                     where not exists (select 1 from public.bridge_alert_deliveries d
                                       where d.incident_id = i.id and d.event = 'opened' and d.channel = c.name)
                       and (i.closed_at is null or i.closed_at > now() - interval '1 day'));
  update public.bridge_alert_incidents i
     set close_notified_at = now()
   where i.closed_at is not null and i.close_notified_at is null and i.notified_at is not null
     and not exists (select 1 from unnest(channels) c(name)
                     where exists (select 1 from public.bridge_alert_deliveries d
                                   where d.incident_id = i.id and d.event = 'opened' and d.channel = c.name)
                       and not exists (select 1 from public.bridge_alert_deliveries d
                                       where d.incident_id = i.id and d.event = 'closed' and d.channel = c.name));
$$;

-- Sensors a person retired are not stale: the first migration's function,
-- with that one filter added.
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
    and not exists (select 1 from public.bridge_retired_sensors r
                    where r.bridge_id = s.bridge_id and r.sensor_id = s.sensor_id)
  order by 6 desc, 1, 2, 3
$$;

-- ---------------------------------------------------------------------------
-- Row-level security, as for the first migration's tables: service_role
-- writes, signed-in readers see incidents and retirements of the bridges
-- they may see.
-- ---------------------------------------------------------------------------
alter table public.bridge_retired_sensors enable row level security;
alter table public.bridge_alert_incidents enable row level security;
alter table public.bridge_alert_deliveries enable row level security;
alter table public.bridge_alert_channels enable row level security;

revoke all on table public.bridge_retired_sensors, public.bridge_alert_incidents,
                    public.bridge_alert_deliveries, public.bridge_alert_channels
  from public, anon, authenticated;
grant select, insert, update, delete on table public.bridge_retired_sensors, public.bridge_alert_incidents,
      public.bridge_alert_deliveries, public.bridge_alert_channels to service_role;
grant select on table public.bridge_retired_sensors, public.bridge_alert_incidents to authenticated;
grant select (timezone, last_dropped_at) on table public.bridges to authenticated;

drop policy if exists bridge_retired_sensors_service_role on public.bridge_retired_sensors;
create policy bridge_retired_sensors_service_role on public.bridge_retired_sensors
  for all to service_role using (true) with check (true);
drop policy if exists bridge_alert_incidents_service_role on public.bridge_alert_incidents;
create policy bridge_alert_incidents_service_role on public.bridge_alert_incidents
  for all to service_role using (true) with check (true);
drop policy if exists bridge_alert_deliveries_service_role on public.bridge_alert_deliveries;
create policy bridge_alert_deliveries_service_role on public.bridge_alert_deliveries
  for all to service_role using (true) with check (true);
drop policy if exists bridge_alert_channels_service_role on public.bridge_alert_channels;
create policy bridge_alert_channels_service_role on public.bridge_alert_channels
  for all to service_role using (true) with check (true);
drop policy if exists bridge_retired_sensors_readers on public.bridge_retired_sensors;
create policy bridge_retired_sensors_readers on public.bridge_retired_sensors
  for select to authenticated using (public.bridge_reader_can_see(bridge_id));
drop policy if exists bridge_alert_incidents_readers on public.bridge_alert_incidents;
create policy bridge_alert_incidents_readers on public.bridge_alert_incidents
  for select to authenticated using (public.bridge_reader_can_see(bridge_id));

revoke all on function public.bridge_alerts_refresh(interval, interval, interval, interval) from public, anon, authenticated;
revoke all on function public.bridge_alerts_settle(text[]) from public, anon, authenticated;
revoke all on function public.bridge_alert_pending(text[]) from public, anon, authenticated;
revoke all on function public.bridge_alert_conditions(interval, interval, interval, interval) from public, anon;
grant execute on function public.bridge_alerts_refresh(interval, interval, interval, interval) to service_role;
grant execute on function public.bridge_alerts_settle(text[]) to service_role;
grant execute on function public.bridge_alert_pending(text[]) to service_role;
grant execute on function public.bridge_alert_conditions(interval, interval, interval, interval)
  to authenticated, service_role;
