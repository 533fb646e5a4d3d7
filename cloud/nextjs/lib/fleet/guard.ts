// Who is acting on the fleet page, checked on the server by every page,
// server action and management route (never only by hiding a button).
// Pages and actions call `requireRole(...)` and get the person back, or
// never return (404 for someone who may not see the fleet or whose role is
// too low for the action).

import { headers } from "next/headers";
import { notFound } from "next/navigation";
import { fleetUser } from "./basic-auth";

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

/**
 * The person making this request, if they hold `needed` or more; otherwise
 * the request ends here. Today's rule: the basic-auth user is an admin.
 */
export async function requireRole(needed: Role): Promise<Person> {
  const user = fleetUser((await headers()).get("authorization"));
  if (user === null) notFound();
  const person: Person = { email: user, role: "admin", source: await requestSource() };
  if (!allows(person.role, needed)) notFound();
  return person;
}

/** For pages: anyone who may see the fleet. */
export async function requireFleetViewer(): Promise<Person> {
  return requireRole("viewer");
}
