// Who is acting on the fleet page, checked on the server by every page,
// server action and management route (never only by hiding a button).
// Pages and actions call `requireRole(...)` and get the person back, or
// never return:
//   * a Supabase Auth user (verified with the auth server on every request,
//     never from the cookie alone) who is in fleet_members acts with their
//     member role; one who is not is sent to /not-invited (no data);
//   * nobody signed in: sent to /sign-in;
//   * HTTP basic auth (FLEET_USER / FLEET_PASSWORD, opt-in) is a read-only
//     viewer, for a wall screen or an uptime monitor;
//   * neither set up: the fleet page is off (404).
// A role too low for what is asked is sent to /bridges/refused, which says so.

import { headers } from "next/headers";
import { notFound, redirect } from "next/navigation";
import { cache } from "react";
import { fleetUser } from "./basic-auth";
import { memberFor } from "./members";
import { supabaseSettings, verifiedUser } from "./supabase";

export type Role = "viewer" | "installer" | "admin";

/** The signed-in person: who (an email where known), and where the request came from. */
export type Person = { email: string; role: Role; source: string };

const RANK: Record<Role, number> = { viewer: 0, installer: 1, admin: 2 };

/** Whether `held` is at least `needed`. */
export function allows(held: Role, needed: Role): boolean {
  return RANK[held] >= RANK[needed];
}

async function requestSource(): Promise<string> {
  const h = await headers();
  return (h.get("x-forwarded-for")?.split(",")[0]?.trim() || h.get("x-real-ip") || "unknown").slice(0, 64);
}

// Once per request: a page and its layout both ask, the auth server is asked once.
const currentPerson = cache(async (): Promise<Person> => {
  const source = await requestSource();
  const basic = fleetUser((await headers()).get("authorization"));
  if (basic !== null) return { email: `basic auth (${basic})`, role: "viewer", source };
  if (supabaseSettings() === null) notFound();
  const user = await verifiedUser();
  if (user === null) redirect("/sign-in");
  const member = await memberFor(user.id, user.email);
  if (member === null) redirect("/not-invited");
  return { email: member.email, role: member.role, source };
});

/**
 * The person making this request, if they hold `needed` or more; otherwise
 * the request ends here (see above). `doing` names the action for the
 * refusal ("claim bridges": "your role (viewer) cannot claim bridges").
 */
export async function requireRole(needed: Role, doing?: string): Promise<Person> {
  const person = await currentPerson();
  if (!allows(person.role, needed)) {
    redirect(`/bridges/refused?${new URLSearchParams({ needed, doing: doing ?? "" }).toString()}`);
  }
  return person;
}

/** For pages: anyone who may see the fleet. */
export async function requireFleetViewer(): Promise<Person> {
  return requireRole("viewer");
}
