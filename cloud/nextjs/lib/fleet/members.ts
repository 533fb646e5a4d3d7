// The fleet's people (table fleet_members): who a signed-in Supabase user is
// here, and the admin's changes. A Supabase user who is not a member gets
// nothing. The last admin cannot be removed or demoted (the database says so).

import type { Role } from "./guard";
import { pool } from "../bridge/db";

async function query<T extends object>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await pool().query<T & Record<string, unknown>>(sql, params)).rows;
}

export type Member = { email: string; role: Role; signed_in: boolean; invited_by: string; created_at: Date };

export const ROLES: Role[] = ["viewer", "installer", "admin"];

/** The member this Supabase user is (recording their user id at first sign-in), or null. */
export async function memberFor(userId: string, email: string): Promise<{ email: string; role: Role } | null> {
  const rows = await query<{ email: string; role: Role }>(
    "select email, role from public.fleet_member_signed_in($1::uuid, $2)",
    [userId, email],
  );
  return rows[0] ?? null;
}

export async function members(): Promise<Member[]> {
  return query<Member>(
    `select email, role, user_id is not null as signed_in, invited_by, created_at
       from public.fleet_members order by email`,
  );
}

/** Add a person or change their role: "added", "changed" or "unchanged"; a clear Error when refused. */
export async function putMember(email: string, role: string, by: string, source: string): Promise<string> {
  const rows = await query<{ outcome: string }>("select public.fleet_member_put($1, $2, $3, $4) as outcome", [
    email,
    role,
    by,
    source,
  ]);
  return rows[0]?.outcome ?? "unchanged";
}

/** Remove a person (recorded in the audit log as `by`'s); false when nobody has that email; a clear Error for the last admin. */
export async function removeMember(email: string, by: string, source: string): Promise<boolean> {
  const rows = await query<{ removed: boolean }>("select public.fleet_member_remove($1, $2, $3) as removed", [email, by, source]);
  return rows[0]?.removed ?? false;
}
