"use server";
// The admin's changes to the fleet's people: invite (the member row, then
// Supabase's invite email through supabase-js's admin API), change a role,
// remove (never the last admin). Each checks the admin role on the server
// first; outcomes travel back in the redirect's query string.

import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { requireRole } from "../../../lib/fleet/guard";
import { putMember, removeMember } from "../../../lib/fleet/members";
import { adminSupabase } from "../../../lib/fleet/supabase";

function text(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

function back(query: Record<string, string>): never {
  redirect(`/bridges/people?${new URLSearchParams(query).toString()}`);
}

/** The database's own words for a refused change (bad email, role, last admin), else a generic one. */
function refusal(err: unknown): string {
  if (err instanceof Error && "code" in err && (err as { code?: string }).code === "22023") return err.message;
  console.error("people page: change failed:", err instanceof Error ? err.message : err);
  return "could not save: the database did not answer; try again";
}

export async function inviteAction(form: FormData): Promise<void> {
  const person = await requireRole("admin", "invite people");
  const email = text(form, "email").toLowerCase();
  const role = text(form, "role");
  let outcome: string;
  try {
    outcome = await putMember(email, role, person.email, person.source);
  } catch (err) {
    back({ error: refusal(err) });
  }
  if (outcome !== "added") back({ error: `${email} is already one of the fleet's people; change their role below` });
  const admin = adminSupabase();
  if (admin === null) {
    back({ done: `${email} added as ${role}; no invite email (SUPABASE_SERVICE_ROLE_KEY is not set): they sign in with "email me a link"` });
  }
  const h = await headers();
  const { error } = await admin.auth.admin.inviteUserByEmail(email, {
    redirectTo: `${h.get("origin") ?? ""}/sign-in`,
  });
  if (error && error.status === 422) {
    back({ done: `${email} added as ${role}; they already have an account on this project and can sign in now` });
  }
  if (error) back({ error: `${email} added as ${role}, but the invite email failed (${error.message}): tell them to use "email me a link"` });
  back({ done: `${email} invited as ${role}: Supabase emails them a link` });
}

export async function changeRoleAction(form: FormData): Promise<void> {
  const person = await requireRole("admin", "change people's roles");
  const email = text(form, "email");
  const role = text(form, "role");
  let outcome: string;
  try {
    outcome = await putMember(email, role, person.email, person.source);
  } catch (err) {
    back({ error: refusal(err) });
  }
  if (outcome === "added") {
    // removed meanwhile by another admin: a role change does not bring them back
    await removeMember(email, person.email, person.source);
    back({ error: `${email} is no longer one of the fleet's people` });
  }
  back({ done: outcome === "changed" ? `${email} is now ${role}` : `${email} already was ${role}` });
}

export async function removeAction(form: FormData): Promise<void> {
  const person = await requireRole("admin", "remove people");
  const email = text(form, "email");
  let removed: boolean;
  try {
    removed = await removeMember(email, person.email, person.source);
  } catch (err) {
    back({ error: refusal(err) });
  }
  back(removed ? { done: `${email} removed: they see nothing of the fleet from their next request` } : { error: `no member ${email}` });
}
