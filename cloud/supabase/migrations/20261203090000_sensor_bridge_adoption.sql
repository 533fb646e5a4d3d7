-- sensor-bridge: adoption (enroll, claim) and config from the cloud (issue 23).
--
-- A bridge flashed with the fleet's one image calls POST /api/bridge/v1/enroll
-- with a fleet-wide enroll token; a person claims it with the code it shows;
-- from then on it authenticates with its own credential (whose hash becomes
-- bridges.api_key_sha256, exactly as for a hand-made bridge) and fetches its
-- config, versioned here, with GET /api/bridge/v1/config. The wire rules are
-- in docs/ingest-contract.md ("Adoption", "Config from the cloud").
--
-- What it adds (nothing existing changes meaning; run twice, the second run
-- changes nothing):
--   * bridge_enroll_tokens      hash, label, created, revoked (the token itself is printed once)
--   * bridge_enrollments        one per (serial, credential): pending until claimed, 14 days at most
--   * bridge_enroll_rate        per-minute counters of enroll calls, per token and per source address
--   * bridge_claim_attempts     every claim, right or wrong, who and from where
--   * bridges gains serial, claimed_at, claimed_by (timezone came with the alerts migration)
--   * bridge_config_versions    the desired config of a bridge, version numbers only grow
--   * bridge_config_state       what the bridge last reported about its config (heartbeats)
--   * functions: enroll_bridge, claim_bridge, set_bridge_config, bridge_desired_config,
--     and the heartbeat's optional `config_source` / `config` keys.

alter table public.bridges add column if not exists serial text;
alter table public.bridges add column if not exists claimed_at timestamptz;
alter table public.bridges add column if not exists claimed_by text;

create table if not exists public.bridge_enroll_tokens (
  id           bigint generated always as identity primary key,
  token_sha256 text not null unique check (token_sha256 ~ '^[0-9a-f]{64}$'),
  label        text not null default '',
  created_at   timestamptz not null default now(),
  revoked_at   timestamptz
);

create table if not exists public.bridge_enrollments (
  id                bigint generated always as identity primary key,
  credential_sha256 text not null unique check (credential_sha256 ~ '^[0-9a-f]{64}$'),
  claim_code_sha256 text not null check (claim_code_sha256 ~ '^[0-9a-f]{64}$'),
  serial            text not null,
  machine_id        text not null default '',
  macs              jsonb not null default '[]',
  version           text not null default '',
  lan_address       text not null default '',
  hostname          text not null default '',
  source_address    text not null default '',
  token_id          bigint references public.bridge_enroll_tokens (id) on delete set null,
  first_seen        timestamptz not null default now(),
  last_seen         timestamptz not null default now(),
  -- a serial seen before with another credential: the old bridge's id, or "enrollment <id>"
  reflashed_from    text,
  claimed_bridge_id text references public.bridges (id) on delete cascade,
  claimed_at        timestamptz,
  -- unclaimed entries go away 14 days after they first enrolled; the next
  -- enroll of a bridge still calling simply records it again
  expires_at        timestamptz not null default now() + interval '14 days'
);
create index if not exists bridge_enrollments_serial on public.bridge_enrollments (serial);
create index if not exists bridge_enrollments_code on public.bridge_enrollments (claim_code_sha256)
  where claimed_at is null;

-- Fixed one-minute windows: the app runs on serverless instances that share
-- nothing but the database.
create table if not exists public.bridge_enroll_rate (
  bucket       text not null,
  window_start timestamptz not null,
  calls        int not null default 0,
  primary key (bucket, window_start)
);

create table if not exists public.bridge_claim_attempts (
  id          bigint generated always as identity primary key,
  at          timestamptz not null default now(),
  who         text not null,
  source      text not null default '',
  outcome     text not null check (outcome in ('claimed', 'wrong', 'locked', 'refused')),
  bridge_id   text,
  note        text not null default ''
);
create index if not exists bridge_claim_attempts_at on public.bridge_claim_attempts (at);

create table if not exists public.bridge_config_versions (
  bridge_id   text not null references public.bridges (id) on delete cascade,
  version     int not null check (version >= 1),
  document    jsonb not null check (jsonb_typeof(document) = 'object'),
  made_by     text not null,
  made_at     timestamptz not null default now(),
  -- set when the bridge reports this version rolled_back or invalid: never offered again
  refused     text check (refused in ('rolled_back', 'invalid')),
  refused_error text,
  primary key (bridge_id, version)
);

create table if not exists public.bridge_config_state (
  bridge_id       text primary key references public.bridges (id) on delete cascade,
  config_source   text check (config_source in ('cloud', 'local')),
  tried_version   int,
  running_version int,
  status          text,
  error           text,
  reported_at     timestamptz not null default now()
);

-- ---------------------------------------------------------------------------
-- Heartbeat: the rules of 20261129120000_sensor_bridge_fleet.sql plus the
-- optional config_source and config keys of adopted bridges.
-- ---------------------------------------------------------------------------
create or replace function public.bridge_heartbeat_error(b jsonb)
returns text language sql stable parallel safe as $$
  select case
    when jsonb_typeof(b) is distinct from 'object' then 'heartbeat: must be a JSON object'
    when (b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host,wireguard_public_key,last_update,config_source,config}'::text[]) <> '{}'::jsonb
      then 'heartbeat: unknown key(s) ' || jsonb_path_query_array(
             b - '{schema,bridge_id,version,sent_at,uptime_s,state,outbox,sensors,host,wireguard_public_key,last_update,config_source,config}'::text[],
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
    when b ? 'config_source' and coalesce(b ->> 'config_source', '') not in ('cloud', 'local')
      then 'config_source: must be "cloud" or "local"'
    when b ? 'config' and jsonb_typeof(b -> 'config') not in ('object', 'null')
      then 'config: must be an object {"version", "status", "error", "running"}'
    when jsonb_typeof(b -> 'config') = 'object' and ((b -> 'config') - '{version,status,error,running}'::text[]) <> '{}'::jsonb
      then 'config: unknown key(s) ' || jsonb_path_query_array((b -> 'config') - '{version,status,error,running}'::text[],
                                                                '$.keyvalue().key')::text
    when jsonb_typeof(b -> 'config') = 'object'
         and coalesce(jsonb_typeof(b -> 'config' -> 'version'), 'null') <> 'null'
         and (jsonb_typeof(b -> 'config' -> 'version') <> 'number'
              or (b -> 'config' ->> 'version') !~ '^[0-9]{1,9}$')
      then 'config.version: must be a whole number >= 0 or null'
    when jsonb_typeof(b -> 'config') = 'object'
         and coalesce(jsonb_typeof(b -> 'config' -> 'running'), 'null') <> 'null'
         and (jsonb_typeof(b -> 'config' -> 'running') <> 'number'
              or (b -> 'config' ->> 'running') !~ '^[0-9]{1,9}$')
      then 'config.running: must be a whole number >= 0 or null'
    when jsonb_typeof(b -> 'config') = 'object'
         and coalesce(b -> 'config' ->> 'status', '') not in ('applied', 'pending', 'rolled_back', 'invalid')
      then 'config.status: must be one of applied, pending, rolled_back, invalid'
    when jsonb_typeof(b -> 'config') = 'object'
         and coalesce(jsonb_typeof(b -> 'config' -> 'error'), 'null') <> 'null'
         and (jsonb_typeof(b -> 'config' -> 'error') <> 'string'
              or length(b -> 'config' ->> 'error') > 500
              or (b -> 'config' ->> 'error') ~ '[[:cntrl:]]')
      then 'config.error: must be printable text of at most 500 characters or null'
  end
$$;

-- Every heartbeat that carries config_source / config updates what the cloud
-- knows of the bridge's config; a version reported rolled_back or invalid is
-- marked refused and never offered again. A trigger, so that
-- record_bridge_heartbeat (and whoever calls it) stays as it is.
create or replace function public.bridge_note_config_report()
returns trigger language plpgsql security invoker
set search_path = public, pg_temp
as $$
declare
  v_body jsonb := new.last_heartbeat;
  v_cfg  jsonb := case when jsonb_typeof(new.last_heartbeat -> 'config') = 'object'
                       then new.last_heartbeat -> 'config' end;
begin
  if v_body is null or not (v_body ? 'config_source' or v_cfg is not null) then
    return new;
  end if;
  insert into public.bridge_config_state as s
         (bridge_id, config_source, tried_version, running_version, status, error, reported_at)
  values (new.id, v_body ->> 'config_source', (v_cfg ->> 'version')::int, (v_cfg ->> 'running')::int,
          v_cfg ->> 'status', v_cfg ->> 'error', now())
  on conflict (bridge_id) do update
     set config_source = excluded.config_source, tried_version = excluded.tried_version,
         running_version = excluded.running_version, status = excluded.status,
         error = excluded.error, reported_at = excluded.reported_at;
  if v_cfg ->> 'status' in ('rolled_back', 'invalid') and (v_cfg ->> 'version') is not null then
    update public.bridge_config_versions
       set refused = v_cfg ->> 'status', refused_error = v_cfg ->> 'error'
     where bridge_id = new.id and version = (v_cfg ->> 'version')::int and refused is null;
  end if;
  return new;
end
$$;

drop trigger if exists bridges_config_report on public.bridges;
create trigger bridges_config_report
  after update of last_heartbeat on public.bridges
  for each row execute function public.bridge_note_config_report();

-- The version the cloud wants the bridge to run: its newest not refused by it.
create or replace function public.bridge_desired_config(p_bridge_id text)
returns table (version int, document jsonb, made_by text, made_at timestamptz)
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select v.version, v.document, v.made_by, v.made_at
    from public.bridge_config_versions v
   where v.bridge_id = p_bridge_id and v.refused is null
   order by v.version desc
   limit 1
$$;

-- ---------------------------------------------------------------------------
-- enroll_bridge: one enroll call, after the route has checked the body.
-- Returns {"status": 202|200|401|429, ...}: the route's answer.
-- ---------------------------------------------------------------------------
create or replace function public.enroll_bridge(p_token_sha256 text, p_body jsonb, p_source text,
                                                p_per_minute int default 30)
returns jsonb
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_token   bigint;
  v_window  timestamptz := date_trunc('minute', now());
  v_calls   int;
  v_bucket  text;
  v_row     public.bridge_enrollments;
  v_bridge  public.bridges;
  v_from    text;
begin
  select id into v_token from public.bridge_enroll_tokens
   where token_sha256 = p_token_sha256 and revoked_at is null;
  if v_token is null then
    return jsonb_build_object('status', 401);
  end if;
  if p_per_minute > 0 then
    foreach v_bucket in array array['token:' || v_token, 'source:' || coalesce(p_source, '')] loop
      insert into public.bridge_enroll_rate as r (bucket, window_start, calls)
      values (v_bucket, v_window, 1)
      on conflict (bucket, window_start) do update set calls = r.calls + 1
      returning calls into v_calls;
      if v_calls > p_per_minute then
        return jsonb_build_object('status', 429, 'retry_after_s',
          greatest(1, ceil(extract(epoch from v_window + interval '1 minute' - now())))::int);
      end if;
    end loop;
    delete from public.bridge_enroll_rate where window_start < v_window - interval '5 minutes';
  end if;

  delete from public.bridge_enrollments where claimed_at is null and expires_at < now();

  select * into v_row from public.bridge_enrollments
   where credential_sha256 = p_body ->> 'credential_sha256' for update;
  if found and v_row.claimed_at is not null then
    select * into v_bridge from public.bridges where id = v_row.claimed_bridge_id;
    update public.bridge_enrollments set last_seen = now() where id = v_row.id;
    return jsonb_build_object('status', 200, 'state', 'claimed', 'bridge_id', v_bridge.id,
                              'timezone', v_bridge.timezone, 'label', v_bridge.label);
  end if;
  if found then
    update public.bridge_enrollments
       set last_seen = now(), lan_address = p_body ->> 'lan_address', version = p_body ->> 'version',
           hostname = p_body ->> 'hostname', macs = p_body -> 'macs', source_address = coalesce(p_source, ''),
           -- a bridge that restarted made a new code: the newest one counts
           claim_code_sha256 = p_body ->> 'claim_code_sha256', token_id = v_token
     where id = v_row.id;
    return jsonb_build_object('status', 202, 'state', 'unclaimed');
  end if;

  -- A serial known with another credential: a re-flashed card. Never merged.
  select b.id into v_from from public.bridges b
   where b.serial = p_body ->> 'serial' order by b.claimed_at desc nulls last limit 1;
  if v_from is null then
    select 'enrollment ' || e.id into v_from from public.bridge_enrollments e
     where e.serial = p_body ->> 'serial' order by e.first_seen desc limit 1;
  end if;
  insert into public.bridge_enrollments
         (credential_sha256, claim_code_sha256, serial, machine_id, macs, version, lan_address,
          hostname, source_address, token_id, reflashed_from)
  values (p_body ->> 'credential_sha256', p_body ->> 'claim_code_sha256', p_body ->> 'serial',
          coalesce(p_body ->> 'machine_id', ''), coalesce(p_body -> 'macs', '[]'),
          p_body ->> 'version', p_body ->> 'lan_address', p_body ->> 'hostname',
          coalesce(p_source, ''), v_token, v_from)
  on conflict (credential_sha256) do nothing;
  return jsonb_build_object('status', 202, 'state', 'unclaimed');
end
$$;

-- When claiming is locked (five wrong codes within 15 minutes lock it for 15
-- minutes from the fifth), else null. Attempts made while locked do not count.
create or replace function public.bridge_claim_locked_until()
returns timestamptz language sql stable security invoker
set search_path = public, pg_temp
as $$
  select max(a.at) + interval '15 minutes'
    from public.bridge_claim_attempts a
   where a.outcome = 'wrong' and a.at > now() - interval '15 minutes'
     and (select count(*) from public.bridge_claim_attempts b
           where b.outcome = 'wrong' and b.at > a.at - interval '15 minutes' and b.at <= a.at) >= 5
  having max(a.at) + interval '15 minutes' > now()
$$;

-- A bridge id from a label: lowercase letters, digits and dashes, unique.
create or replace function public.bridge_id_from_label(p_label text)
returns text language plpgsql stable security invoker
set search_path = public, pg_temp
as $$
declare
  v_base text := left(trim(both '-' from regexp_replace(lower(p_label), '[^a-z0-9]+', '-', 'g')), 60);
  v_id   text;
  v_n    int := 1;
begin
  if v_base = '' then v_base := 'bridge'; end if;
  v_id := v_base;
  while exists (select 1 from public.bridges where id = v_id) loop
    v_n := v_n + 1;
    v_id := v_base || '-' || v_n;
  end loop;
  return v_id;
end
$$;

-- ---------------------------------------------------------------------------
-- claim_bridge: the fleet page's and cloud/bin/bridges' claim. Every call is
-- logged. Returns {"ok": true, "bridge_id"} or {"ok": false, "error",
-- "locked_until"?} (no exception for a wrong code: the attempt must stay logged).
-- ---------------------------------------------------------------------------
create or replace function public.claim_bridge(p_code_sha256 text, p_label text, p_timezone text,
                                               p_bridge_id text, p_who text, p_source text)
returns jsonb
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_until timestamptz;
  v_row   public.bridge_enrollments;
  v_id    text;
  v_count int;
begin
  -- one claim at a time: the lockout count and "a code works once" stay exact
  perform pg_advisory_xact_lock(hashtext('sensor-bridge claim'));
  v_until := public.bridge_claim_locked_until();
  if v_until is not null then
    insert into public.bridge_claim_attempts (who, source, outcome, note)
    values (p_who, coalesce(p_source, ''), 'locked', 'claiming locked');
    return jsonb_build_object('ok', false, 'locked_until', v_until,
      'error', 'claiming is locked after five wrong codes until '
               || to_char(v_until at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'));
  end if;
  if coalesce(trim(p_label), '') = '' or length(p_label) > 200 then
    insert into public.bridge_claim_attempts (who, source, outcome, note)
    values (p_who, coalesce(p_source, ''), 'refused', 'label missing or too long');
    return jsonb_build_object('ok', false, 'error', 'label: give the store''s name (at most 200 characters)');
  end if;
  if p_timezone is null or not exists (select 1 from pg_timezone_names where name = p_timezone) then
    insert into public.bridge_claim_attempts (who, source, outcome, note)
    values (p_who, coalesce(p_source, ''), 'refused', 'unknown time zone');
    return jsonb_build_object('ok', false,
      'error', format('timezone: unknown time zone %L (use an IANA name such as Europe/Lisbon)', p_timezone));
  end if;
  if nullif(p_bridge_id, '') is not null then
    if p_bridge_id !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' then
      insert into public.bridge_claim_attempts (who, source, outcome, note)
      values (p_who, coalesce(p_source, ''), 'refused', 'bad id');
      return jsonb_build_object('ok', false,
        'error', 'id: 1 to 128 letters, digits, ".", "_", ":" or "-", starting with a letter or digit');
    end if;
    if exists (select 1 from public.bridges where id = p_bridge_id) then
      insert into public.bridge_claim_attempts (who, source, outcome, note)
      values (p_who, coalesce(p_source, ''), 'refused', 'id taken');
      return jsonb_build_object('ok', false, 'error', format('id: %s is already a bridge; choose another', p_bridge_id));
    end if;
  end if;

  select count(*) into v_count from public.bridge_enrollments
   where claim_code_sha256 = p_code_sha256 and claimed_at is null and expires_at >= now();
  if v_count <> 1 then
    insert into public.bridge_claim_attempts (who, source, outcome, note)
    values (p_who, coalesce(p_source, ''), 'wrong', case when v_count > 1 then 'code shown by two bridges' else '' end);
    v_until := public.bridge_claim_locked_until();
    return jsonb_build_object('ok', false, 'locked_until', v_until,
      'error', case when v_until is not null
                    then 'no unclaimed bridge shows this code; claiming is now locked until '
                         || to_char(v_until at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')
                    when v_count > 1 then 'two bridges show this code: restart one of them for a new code'
                    else 'no unclaimed bridge shows this code (check it on the bridge''s card or status)' end);
  end if;
  select * into v_row from public.bridge_enrollments
   where claim_code_sha256 = p_code_sha256 and claimed_at is null and expires_at >= now() for update;
  if exists (select 1 from public.bridges where api_key_sha256 = v_row.credential_sha256) then
    insert into public.bridge_claim_attempts (who, source, outcome, note)
    values (p_who, coalesce(p_source, ''), 'refused', 'credential already in use');
    return jsonb_build_object('ok', false, 'error', 'this bridge''s credential is already in use by another bridge');
  end if;
  v_id := coalesce(nullif(p_bridge_id, ''), public.bridge_id_from_label(p_label));
  insert into public.bridges (id, api_key_sha256, label, timezone, serial, claimed_at, claimed_by)
  values (v_id, v_row.credential_sha256, trim(p_label), p_timezone, v_row.serial, now(), p_who);
  update public.bridge_enrollments set claimed_bridge_id = v_id, claimed_at = now() where id = v_row.id;
  insert into public.bridge_claim_attempts (who, source, outcome, bridge_id)
  values (p_who, coalesce(p_source, ''), 'claimed', v_id);
  return jsonb_build_object('ok', true, 'bridge_id', v_id);
end
$$;

-- ---------------------------------------------------------------------------
-- set_bridge_config: a new desired version (the next number) made by p_made_by.
-- Refused (22023) for an unknown bridge and for one managed on site (its last
-- report says config_source local).
-- ---------------------------------------------------------------------------
create or replace function public.set_bridge_config(p_bridge_id text, p_document jsonb, p_made_by text)
returns int
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_version int;
begin
  perform 1 from public.bridges where id = p_bridge_id for update;
  if not found then
    raise exception using errcode = '22023', message = format('bridge: no bridge %L', p_bridge_id);
  end if;
  if exists (select 1 from public.bridge_config_state
              where bridge_id = p_bridge_id and config_source = 'local') then
    raise exception using errcode = '22023',
      message = format('bridge %s is managed on site (a config file on its card wins); remove the card''s file to manage it here', p_bridge_id);
  end if;
  if jsonb_typeof(p_document) is distinct from 'object' then
    raise exception using errcode = '22023', message = 'config: must be a JSON object';
  end if;
  select coalesce(max(version), 0) + 1 into v_version
    from public.bridge_config_versions where bridge_id = p_bridge_id;
  insert into public.bridge_config_versions (bridge_id, version, document, made_by)
  values (p_bridge_id, v_version, p_document, coalesce(nullif(p_made_by, ''), 'unknown'));
  return v_version;
end
$$;

-- ---------------------------------------------------------------------------
-- Security: as for the other tables, the routes' role (service_role) writes;
-- signed-in readers see nothing of this (hashes and camera passwords).
-- ---------------------------------------------------------------------------
alter table public.bridge_enroll_tokens enable row level security;
alter table public.bridge_enrollments enable row level security;
alter table public.bridge_enroll_rate enable row level security;
alter table public.bridge_claim_attempts enable row level security;
alter table public.bridge_config_versions enable row level security;
alter table public.bridge_config_state enable row level security;

revoke all on table public.bridge_enroll_tokens, public.bridge_enrollments, public.bridge_enroll_rate,
  public.bridge_claim_attempts, public.bridge_config_versions, public.bridge_config_state
  from anon, authenticated;
grant select, insert, update, delete on table public.bridge_enroll_tokens, public.bridge_enrollments,
  public.bridge_enroll_rate, public.bridge_claim_attempts, public.bridge_config_versions,
  public.bridge_config_state to service_role;
grant select (serial, claimed_at) on table public.bridges to authenticated;

do $$
declare
  t text;
begin
  foreach t in array array['bridge_enroll_tokens', 'bridge_enrollments', 'bridge_enroll_rate',
                           'bridge_claim_attempts', 'bridge_config_versions', 'bridge_config_state'] loop
    execute format('drop policy if exists %I on public.%I', t || '_service_role', t);
    execute format('create policy %I on public.%I for all to service_role using (true) with check (true)',
                   t || '_service_role', t);
  end loop;
end
$$;

revoke all on function public.enroll_bridge(text, jsonb, text, int) from public, anon, authenticated;
revoke all on function public.claim_bridge(text, text, text, text, text, text) from public, anon, authenticated;
revoke all on function public.set_bridge_config(text, jsonb, text) from public, anon, authenticated;
revoke all on function public.bridge_desired_config(text) from public, anon, authenticated;
grant execute on function public.enroll_bridge(text, jsonb, text, int) to service_role;
grant execute on function public.claim_bridge(text, text, text, text, text, text) to service_role;
grant execute on function public.set_bridge_config(text, jsonb, text) to service_role;
grant execute on function public.bridge_desired_config(text) to service_role;
