-- sensor-bridge: a scan of the store's network asked from the fleet page (issue 25).
--
-- An installer presses "Scan the store's network" on a bridge's page: a scan
-- request is numbered here. The cloud names the newest request the bridge has
-- not answered in its config and heartbeat answers; the bridge runs one
-- `sensor-bridge discover` and posts the document to POST /api/bridge/v1/scan,
-- kept as the bridge's newest result. The wire rules are in
-- docs/ingest-contract.md ("A scan of the store's network").
--
-- What it adds (nothing existing changes meaning; run twice, the second run
-- changes nothing):
--   * bridge_scan_requests   who asked for a scan of which bridge, when
--   * bridge_scan_results    the newest result per bridge: devices, error, received at
--   * functions: request_bridge_scan, bridge_scan_wanted, record_bridge_scan

create table if not exists public.bridge_scan_requests (
  id           bigint generated always as identity primary key,
  bridge_id    text not null references public.bridges (id) on delete cascade,
  requested_by text not null,
  requested_at timestamptz not null default now()
);
create index if not exists bridge_scan_requests_bridge on public.bridge_scan_requests (bridge_id, id desc);

create table if not exists public.bridge_scan_results (
  bridge_id   text primary key references public.bridges (id) on delete cascade,
  scan_id     bigint not null,
  devices     jsonb not null default '[]' check (jsonb_typeof(devices) = 'array'),
  -- the rest of the bridge's document: interfaces looked on, skipped, subnets, seconds
  looked      jsonb not null default '{}' check (jsonb_typeof(looked) = 'object'),
  error       text,
  received_at timestamptz not null default now()
);

-- A new scan request; returns its id.
create or replace function public.request_bridge_scan(p_bridge_id text, p_requested_by text)
returns bigint
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  perform 1 from public.bridges where id = p_bridge_id and disabled_at is null;
  if not found then
    raise exception using errcode = '22023', message = format('bridge: no bridge %L in service', p_bridge_id);
  end if;
  insert into public.bridge_scan_requests (bridge_id, requested_by)
  values (p_bridge_id, coalesce(nullif(p_requested_by, ''), 'unknown'))
  returning id into v_id;
  return v_id;
end
$$;

-- The scan the bridge should run: its newest request newer than its newest result, or null.
create or replace function public.bridge_scan_wanted(p_bridge_id text)
returns bigint
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select q.id from public.bridge_scan_requests q
   where q.bridge_id = p_bridge_id
     and q.id > coalesce((select r.scan_id from public.bridge_scan_results r where r.bridge_id = p_bridge_id), 0)
   order by q.id desc limit 1
$$;

-- Keep a bridge's scan result unless a newer scan's result is already there.
-- 22023 (a 400 on the route) for a scan id never asked of this bridge.
create or replace function public.record_bridge_scan(p_bridge_id text, p_scan_id bigint, p_devices jsonb,
                                                     p_looked jsonb, p_error text)
returns boolean
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
begin
  perform 1 from public.bridge_scan_requests where id = p_scan_id and bridge_id = p_bridge_id;
  if not found then
    raise exception using errcode = '22023',
      message = format('scan_id: no scan %s was asked of bridge %s', p_scan_id, p_bridge_id);
  end if;
  insert into public.bridge_scan_results as r (bridge_id, scan_id, devices, looked, error)
  values (p_bridge_id, p_scan_id, coalesce(p_devices, '[]'), coalesce(p_looked, '{}'), p_error)
  on conflict (bridge_id) do update
    set scan_id = excluded.scan_id, devices = excluded.devices, looked = excluded.looked,
        error = excluded.error, received_at = now()
    where r.scan_id <= excluded.scan_id;
  return found;
end
$$;

-- Security: as for the adoption tables, only the routes' role (service_role) reads and writes.
alter table public.bridge_scan_requests enable row level security;
alter table public.bridge_scan_results enable row level security;
revoke all on table public.bridge_scan_requests, public.bridge_scan_results from anon, authenticated;
grant select, insert, update, delete on table public.bridge_scan_requests, public.bridge_scan_results
  to service_role;

do $$
declare
  t text;
begin
  foreach t in array array['bridge_scan_requests', 'bridge_scan_results'] loop
    execute format('drop policy if exists %I on public.%I', t || '_service_role', t);
    execute format('create policy %I on public.%I for all to service_role using (true) with check (true)',
                   t || '_service_role', t);
  end loop;
end
$$;

revoke all on function public.request_bridge_scan(text, text) from public, anon, authenticated;
revoke all on function public.bridge_scan_wanted(text) from public, anon, authenticated;
revoke all on function public.record_bridge_scan(text, bigint, jsonb, jsonb, text) from public, anon, authenticated;
grant execute on function public.request_bridge_scan(text, text) to service_role;
grant execute on function public.bridge_scan_wanted(text) to service_role;
grant execute on function public.record_bridge_scan(text, bigint, jsonb, jsonb, text) to service_role;
