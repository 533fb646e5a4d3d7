-- sensor-bridge: the fleet's audit log (issue 24, "Every change is recorded").
--
-- One append-only table, fleet_audit_log: when, who (a person's email, or
-- "shell (<unix user>)" for cloud/bin/bridges), from where (the client's
-- address, or "shell on <host>"), what (claim, config, retire, rotate,
-- enroll-token new / revoke, member add / role / remove...), which bridge
-- (null for fleet-wide changes) and a before/after summary. A config version
-- is summarised by WHICH keys changed ("sensors[entrance-1].password:
-- changed"), never by values, so no camera password, ping URL or key is ever
-- written here.
--
-- The changes are recorded inside the database functions that make them, so
-- the fleet page and the shell record alike:
--   * claim            a trigger on bridge_claim_attempts (outcome "claimed")
--   * config           set_bridge_config (now with the caller's address)
--   * retire, rotate   retire_bridge, rotate_bridge_key (new)
--   * enroll tokens    make_enroll_token, revoke_enroll_token (new)
--   * anything else    fleet_audit_record(actor, source, action, bridge_id, detail)
--
-- Append-only: no role the app or the shell uses holds UPDATE, DELETE or
-- TRUNCATE on the table, and triggers refuse all three for everyone, because
-- on Supabase the app connects as the tables' owner, whom grants do not bind.
-- (A superuser can still drop a trigger: that is a schema change, visible in
-- the migration history, not something a page or a script does.)
--
-- No foreign key to bridges: a bridge's history outlives the bridge, and a
-- cascade would be a delete. Run twice, the second run changes nothing.

create table if not exists public.fleet_audit_log (
  id        bigint generated always as identity primary key,
  at        timestamptz not null default now(),
  actor     text not null check (length(actor) between 1 and 320),
  source    text not null default '' check (length(source) <= 200),
  action    text not null check (action ~ '^[a-z][a-z-]{0,30}( [a-z][a-z-]{0,30})?$'),
  bridge_id text,
  detail    jsonb not null default '{}' check (jsonb_typeof(detail) = 'object')
);
create index if not exists fleet_audit_log_bridge on public.fleet_audit_log (bridge_id, id desc);

create or replace function public.fleet_audit_refuse()
returns trigger language plpgsql
set search_path = public, pg_temp
as $$
begin
  raise exception using errcode = '42501',
    message = format('fleet_audit_log is append-only: %s refused', lower(tg_op));
end
$$;

drop trigger if exists fleet_audit_log_no_change on public.fleet_audit_log;
create trigger fleet_audit_log_no_change
  before update or delete on public.fleet_audit_log
  for each row execute function public.fleet_audit_refuse();
drop trigger if exists fleet_audit_log_no_truncate on public.fleet_audit_log;
create trigger fleet_audit_log_no_truncate
  before truncate on public.fleet_audit_log
  for each statement execute function public.fleet_audit_refuse();

-- ---------------------------------------------------------------------------
-- fleet_audit_record: one row; the id it got. For changes that are not made by
-- one of the functions below (the page's member changes, for one).
-- ---------------------------------------------------------------------------
create or replace function public.fleet_audit_record(p_actor text, p_source text, p_action text,
                                                     p_bridge_id text, p_detail jsonb)
returns bigint
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  if coalesce(trim(p_actor), '') = '' then
    raise exception using errcode = '22023', message = 'audit: actor is required (an email or "shell (<user>)")';
  end if;
  if p_action is null or p_action !~ '^[a-z][a-z-]{0,30}( [a-z][a-z-]{0,30})?$' then
    raise exception using errcode = '22023',
      message = format('audit: action %L must be lower-case words such as "retire" or "member add"', p_action);
  end if;
  if p_detail is not null and jsonb_typeof(p_detail) <> 'object' then
    raise exception using errcode = '22023', message = 'audit: detail must be a JSON object';
  end if;
  insert into public.fleet_audit_log (actor, source, action, bridge_id, detail)
  values (left(trim(p_actor), 320), left(coalesce(p_source, ''), 200), p_action, nullif(p_bridge_id, ''),
          coalesce(p_detail, '{}'))
  returning id into v_id;
  return v_id;
end
$$;

-- ---------------------------------------------------------------------------
-- Which keys of a config document changed: "path: added|removed|changed",
-- never a value. Lists of tables with an id (sensors) or a sensor_id (MQTT
-- devices) are compared entry by entry ("sensors[entrance-1].url: changed").
-- ---------------------------------------------------------------------------
create or replace function public.fleet_audit_config_changes(p_before jsonb, p_after jsonb, p_path text default '')
returns text[]
language plpgsql immutable
set search_path = public, pg_temp
as $$
declare
  v_out  text[] := '{}';
  v_key  text;
  v_name text;
  v_item text;
begin
  if p_before is not distinct from p_after then
    return v_out;
  end if;
  if p_before is null then
    return array[p_path || ': added'];
  end if;
  if p_after is null then
    return array[p_path || ': removed'];
  end if;
  if jsonb_typeof(p_before) = 'object' and jsonb_typeof(p_after) = 'object' then
    for v_key in select k from jsonb_object_keys(p_before) k union select k from jsonb_object_keys(p_after) k order by 1 loop
      v_out := v_out || public.fleet_audit_config_changes(
        p_before -> v_key, p_after -> v_key, case when p_path = '' then v_key else p_path || '.' || v_key end);
    end loop;
    return v_out;
  end if;
  if jsonb_typeof(p_before) = 'array' and jsonb_typeof(p_after) = 'array' then
    foreach v_name in array array['id', 'sensor_id'] loop
      -- every entry a table with a distinct string under v_name: compare by it
      if (select bool_and(jsonb_typeof(e -> v_name) = 'string') and count(*) = count(distinct e ->> v_name)
            from jsonb_array_elements(p_before) e)
         and (select bool_and(jsonb_typeof(e -> v_name) = 'string') and count(*) = count(distinct e ->> v_name)
                from jsonb_array_elements(p_after) e) then
        for v_item in select e ->> v_name from jsonb_array_elements(p_before) e
                      union select e ->> v_name from jsonb_array_elements(p_after) e order by 1 loop
          v_out := v_out || public.fleet_audit_config_changes(
            (select e from jsonb_array_elements(p_before) e where e ->> v_name = v_item),
            (select e from jsonb_array_elements(p_after) e where e ->> v_name = v_item),
            p_path || '[' || v_item || ']');
        end loop;
        return v_out;
      end if;
    end loop;
  end if;
  return array[p_path || ': changed'];
end
$$;

-- ---------------------------------------------------------------------------
-- Claim: every successful claim (page or shell) is a row, from the claim log
-- claim_bridge already writes, so claim_bridge stays as it is.
-- ---------------------------------------------------------------------------
create or replace function public.fleet_audit_claim()
returns trigger language plpgsql security invoker
set search_path = public, pg_temp
as $$
begin
  if new.outcome = 'claimed' then
    perform public.fleet_audit_record(new.who, new.source, 'claim', new.bridge_id,
      (select jsonb_build_object('after', jsonb_build_object('label', b.label, 'timezone', b.timezone,
                                                              'serial', b.serial))
         from public.bridges b where b.id = new.bridge_id));
  end if;
  return new;
end
$$;

drop trigger if exists bridge_claim_attempts_audit on public.bridge_claim_attempts;
create trigger bridge_claim_attempts_audit
  after insert on public.bridge_claim_attempts
  for each row execute function public.fleet_audit_claim();

-- ---------------------------------------------------------------------------
-- set_bridge_config with the caller's address: the version and its audit row
-- (which keys changed since the newest version). The three-argument form of
-- 20261203090000 stays for callers that know no address.
-- ---------------------------------------------------------------------------
create or replace function public.set_bridge_config(p_bridge_id text, p_document jsonb, p_made_by text,
                                                    p_source text)
returns int
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_version int;
  v_before  jsonb;
  v_by      text := coalesce(nullif(p_made_by, ''), 'unknown');
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
  select v.version, v.document into v_version, v_before
    from public.bridge_config_versions v where v.bridge_id = p_bridge_id order by v.version desc limit 1;
  v_version := coalesce(v_version, 0) + 1;
  insert into public.bridge_config_versions (bridge_id, version, document, made_by)
  values (p_bridge_id, v_version, p_document, v_by);
  perform public.fleet_audit_record(v_by, p_source, 'config', p_bridge_id,
    jsonb_build_object('version', v_version,
                       'changes', to_jsonb(public.fleet_audit_config_changes(coalesce(v_before, '{}'), p_document))));
  return v_version;
end
$$;

create or replace function public.set_bridge_config(p_bridge_id text, p_document jsonb, p_made_by text)
returns int
language sql volatile security invoker
set search_path = public, pg_temp
as $$
  select public.set_bridge_config(p_bridge_id, p_document, p_made_by, '')
$$;

-- ---------------------------------------------------------------------------
-- retire_bridge: its key is refused and it raises no alerts; its readings stay.
-- Returns {"ok": true, "already": bool} or {"ok": false, "error"}.
-- ---------------------------------------------------------------------------
create or replace function public.retire_bridge(p_bridge_id text, p_who text, p_source text)
returns jsonb
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_was timestamptz;
  v_now timestamptz;
begin
  select disabled_at into v_was from public.bridges where id = p_bridge_id for update;
  if not found then
    return jsonb_build_object('ok', false, 'error', format('no bridge %L', p_bridge_id));
  end if;
  if v_was is not null then
    return jsonb_build_object('ok', true, 'already', true);
  end if;
  update public.bridges set disabled_at = now() where id = p_bridge_id returning disabled_at into v_now;
  perform public.fleet_audit_record(p_who, p_source, 'retire', p_bridge_id,
    jsonb_build_object('before', jsonb_build_object('retired', false),
                       'after', jsonb_build_object('retired', true)));
  return jsonb_build_object('ok', true, 'already', false);
end
$$;

-- ---------------------------------------------------------------------------
-- rotate_bridge_key: the bridge's key becomes the one hashed to p_key_sha256
-- (the old one stops working at once) and a retired bridge is back. The key and
-- its hash are never written to the audit log. Returns the bridge id, or null
-- for an unknown bridge.
-- ---------------------------------------------------------------------------
create or replace function public.rotate_bridge_key(p_bridge_id text, p_key_sha256 text, p_label text,
                                                    p_who text, p_source text)
returns text
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_old public.bridges;
  v_label text := coalesce(nullif(p_label, ''), null);
begin
  select * into v_old from public.bridges where id = p_bridge_id for update;
  if not found then
    return null;
  end if;
  update public.bridges
     set api_key_sha256 = p_key_sha256, disabled_at = null, label = coalesce(v_label, label)
   where id = p_bridge_id;
  perform public.fleet_audit_record(p_who, p_source, 'rotate', p_bridge_id,
    jsonb_build_object('key', 'changed',
                       'before', jsonb_build_object('retired', v_old.disabled_at is not null)
                                 || case when v_label is distinct from null and v_label <> v_old.label
                                         then jsonb_build_object('label', v_old.label) else '{}' end,
                       'after', jsonb_build_object('retired', false)
                                || case when v_label is distinct from null and v_label <> v_old.label
                                        then jsonb_build_object('label', v_label) else '{}' end));
  return p_bridge_id;
end
$$;

-- ---------------------------------------------------------------------------
-- Enroll tokens: made (its hash; the token is printed once by the caller) and
-- revoked by id or hash prefix. Fleet-wide rows (no bridge).
-- ---------------------------------------------------------------------------
create or replace function public.make_enroll_token(p_token_sha256 text, p_label text, p_who text, p_source text)
returns bigint
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  insert into public.bridge_enroll_tokens (token_sha256, label)
  values (p_token_sha256, coalesce(p_label, '')) returning id into v_id;
  perform public.fleet_audit_record(p_who, p_source, 'enroll-token new', null,
    jsonb_build_object('token_id', v_id, 'after', jsonb_build_object('label', coalesce(p_label, ''))));
  return v_id;
end
$$;

-- Returns {"ok": true, "id", "already": bool} or {"ok": false, "error"}.
-- A short number is a token's id only: as a hash prefix it would also name one
-- token in sixteen (a prefix is 6+ hex digits, as `enroll-token list` shows).
create or replace function public.revoke_enroll_token(p_ref text, p_who text, p_source text)
returns jsonb
language plpgsql volatile security invoker
set search_path = public, pg_temp
as $$
declare
  v_count int;
  v_token public.bridge_enroll_tokens;
begin
  if coalesce(p_ref, '') !~ '^([0-9]+|[0-9a-f]{6,64})$' then
    return jsonb_build_object('ok', false,
      'error', 'give the token''s ID or a hash prefix (6+ hex digits) from ''enroll-token list''');
  end if;
  select count(*) into v_count from public.bridge_enroll_tokens
   where id::text = p_ref or (length(p_ref) >= 6 and token_sha256 like p_ref || '%');
  if v_count <> 1 then
    return jsonb_build_object('ok', false, 'error', format('%s names %s tokens (see: enroll-token list)', p_ref, v_count));
  end if;
  select * into v_token from public.bridge_enroll_tokens
   where id::text = p_ref or (length(p_ref) >= 6 and token_sha256 like p_ref || '%') for update;
  if v_token.revoked_at is not null then
    return jsonb_build_object('ok', true, 'id', v_token.id, 'already', true);
  end if;
  update public.bridge_enroll_tokens set revoked_at = now() where id = v_token.id;
  perform public.fleet_audit_record(p_who, p_source, 'enroll-token revoke', null,
    jsonb_build_object('token_id', v_token.id, 'label', v_token.label,
                       'before', jsonb_build_object('revoked', false),
                       'after', jsonb_build_object('revoked', true)));
  return jsonb_build_object('ok', true, 'id', v_token.id, 'already', false);
end
$$;

-- ---------------------------------------------------------------------------
-- Security: the routes' role (service_role) reads and appends; nobody the app
-- or the shell uses may change or remove a row. The owner's own UPDATE/DELETE/
-- TRUNCATE rights are revoked too (a non-superuser owner then gets "permission
-- denied"); the triggers above refuse them for everyone, superusers included.
-- ---------------------------------------------------------------------------
alter table public.fleet_audit_log enable row level security;
revoke all on table public.fleet_audit_log from public, anon, authenticated, service_role;
grant select, insert on table public.fleet_audit_log to service_role;
revoke update, delete, truncate on table public.fleet_audit_log from current_user;
drop policy if exists fleet_audit_log_read on public.fleet_audit_log;
create policy fleet_audit_log_read on public.fleet_audit_log for select to service_role using (true);
drop policy if exists fleet_audit_log_append on public.fleet_audit_log;
create policy fleet_audit_log_append on public.fleet_audit_log for insert to service_role with check (true);

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.fleet_audit_record(text, text, text, text, jsonb)',
    'public.fleet_audit_config_changes(jsonb, jsonb, text)',
    'public.set_bridge_config(text, jsonb, text, text)',
    'public.retire_bridge(text, text, text)',
    'public.rotate_bridge_key(text, text, text, text, text)',
    'public.make_enroll_token(text, text, text, text)',
    'public.revoke_enroll_token(text, text, text)'] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
