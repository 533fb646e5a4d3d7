-- sensor-bridge: the fleet page's people (issue 24).
--
-- Who may use the fleet page, and with which role. Signing in is Supabase
-- Auth's (email + password or magic link); a Supabase user who is not in
-- fleet_members sees nothing, so a project's other users get nothing by
-- default. Roles: viewer (fleet and bridge pages), installer (claim bridges,
-- edit sensors and config), admin (everything, people included).
--
-- What it adds (nothing existing changes meaning; run twice, the second run
-- changes nothing):
--   * fleet_members        email (lower-case, unique), role, user id (filled at first sign-in),
--                          invited_by, created_at
--   * functions: fleet_member_signed_in (who is this Supabase user here?),
--     fleet_member_put (add or change a role), fleet_member_remove; both refuse to
--     leave the fleet without an admin.
-- Only service_role (the app, cloud/bin/bridges as the owner) reads or writes it.

create table if not exists public.fleet_members (
  email      text primary key check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+$'),
  user_id    uuid unique,
  role       text not null check (role in ('viewer', 'installer', 'admin')),
  invited_by text not null,
  created_at timestamptz not null default now()
);

-- The member a signed-in Supabase user is, matched by user id, else (first
-- sign-in of an invited email) by email, which then records the user id.
create or replace function public.fleet_member_signed_in(p_user_id uuid, p_email text)
returns table (email text, role text)
language plpgsql
as $$
begin
  return query
    update public.fleet_members m set user_id = p_user_id
     where m.user_id is null and m.email = lower(p_email)
       and not exists (select 1 from public.fleet_members o where o.user_id = p_user_id)
    returning m.email, m.role;
  if found then
    return;
  end if;
  return query select m.email, m.role from public.fleet_members m where m.user_id = p_user_id;
end
$$;

-- Raise when no admin would be left (call after the change, in its transaction).
create or replace function public.fleet_members_keep_an_admin()
returns void
language plpgsql
as $$
begin
  -- one change at a time, so two admins cannot demote each other at once
  if not exists (select 1 from public.fleet_members where role = 'admin') then
    raise exception 'the fleet needs at least one admin: make someone else admin first'
      using errcode = '22023';
  end if;
end
$$;

-- Add a person or change their role; returns 'added' or 'changed' (or 'unchanged').
-- Each change is a row of the audit log (fleet_audit_record, from the audit
-- migration that follows this one: looked up when called, not when made).
create or replace function public.fleet_member_put(p_email text, p_role text, p_by text, p_source text default '')
returns text
language plpgsql
as $$
declare
  v_email text := lower(btrim(p_email));
  v_old text;
begin
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    raise exception 'email: % is not an email address', p_email using errcode = '22023';
  end if;
  if p_role is null or p_role not in ('viewer', 'installer', 'admin') then
    raise exception 'role: % is not one of viewer, installer, admin', p_role using errcode = '22023';
  end if;
  lock table public.fleet_members in share row exclusive mode;
  select role into v_old from public.fleet_members where email = v_email;
  if v_old is null then
    insert into public.fleet_members (email, role, invited_by) values (v_email, p_role, p_by);
    perform public.fleet_audit_record(p_by, p_source, 'member add', null,
                                      jsonb_build_object('member', v_email, 'after', p_role));
    return 'added';
  end if;
  if v_old = p_role then
    return 'unchanged';
  end if;
  update public.fleet_members set role = p_role where email = v_email;
  perform public.fleet_members_keep_an_admin();
  perform public.fleet_audit_record(p_by, p_source, 'member role', null,
                                    jsonb_build_object('member', v_email, 'before', v_old, 'after', p_role));
  return 'changed';
end
$$;

-- Remove a person; false when there was nobody of that email.
create or replace function public.fleet_member_remove(p_email text, p_by text, p_source text default '')
returns boolean
language plpgsql
as $$
declare
  v_old text;
begin
  lock table public.fleet_members in share row exclusive mode;
  delete from public.fleet_members where email = lower(btrim(p_email)) returning role into v_old;
  if not found then
    return false;
  end if;
  perform public.fleet_members_keep_an_admin();
  perform public.fleet_audit_record(p_by, p_source, 'member remove', null,
                                    jsonb_build_object('member', lower(btrim(p_email)), 'before', v_old));
  return true;
end
$$;

alter table public.fleet_members enable row level security;
revoke all on table public.fleet_members from public, anon, authenticated;
grant select, insert, update, delete on table public.fleet_members to service_role;
drop policy if exists fleet_members_service_role on public.fleet_members;
create policy fleet_members_service_role on public.fleet_members for all to service_role
  using (true) with check (true);

revoke all on function public.fleet_member_signed_in(uuid, text) from public, anon, authenticated;
revoke all on function public.fleet_members_keep_an_admin() from public, anon, authenticated;
revoke all on function public.fleet_member_put(text, text, text, text) from public, anon, authenticated;
revoke all on function public.fleet_member_remove(text, text, text) from public, anon, authenticated;
grant execute on function public.fleet_member_signed_in(uuid, text) to service_role;
grant execute on function public.fleet_members_keep_an_admin() to service_role;
grant execute on function public.fleet_member_put(text, text, text, text) to service_role;
grant execute on function public.fleet_member_remove(text, text, text) to service_role;

-- ---------------------------------------------------------------------------
-- The fleet page's own pages live beside the bridges' (/bridges/audit,
-- /bridges/people, /bridges/refused) and win over a bridge of the same id,
-- whose page could never be opened: no new bridge takes one of those ids.
-- NOT VALID: a bridge that already has one keeps it (and is still reachable
-- from a shell); a label that would make one gets a number instead.
-- ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_constraint where conname = 'bridges_id_is_not_a_fleet_page') then
    alter table public.bridges add constraint bridges_id_is_not_a_fleet_page
      check (id not in ('audit', 'people', 'refused')) not valid;
  end if;
end
$$;

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
  while v_id in ('audit', 'people', 'refused') or exists (select 1 from public.bridges where id = v_id) loop
    v_n := v_n + 1;
    v_id := v_base || '-' || v_n;
  end loop;
  return v_id;
end
$$;
