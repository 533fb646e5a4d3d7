// /bridges/people: the fleet's people and their roles (admins only): invite
// by email and role, change a role, remove a person.

import type { Metadata } from "next";
import { Suspense } from "react";
import { requireRole } from "../../../lib/fleet/guard";
import { members, ROLES } from "../../../lib/fleet/members";
import { utc } from "../../../lib/fleet/state";
import styles from "../fleet.module.css";
import { changeRoleAction, inviteAction, removeAction } from "./actions";

export const metadata: Metadata = { title: "People · sensor-bridge", robots: { index: false } };

type Search = Promise<Record<string, string | string[] | undefined>>;

export default function PeoplePage({ searchParams }: { searchParams: Search }) {
  return (
    <Suspense fallback={null}>
      <People searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

const MAY: Record<string, string> = {
  viewer: "sees the fleet and bridge pages",
  installer: "also claims bridges, edits sensors and config, scans",
  admin: "everything, including people, enroll tokens, retiring and rotating",
};

async function People({ searchParams }: { searchParams: Search }) {
  const person = await requireRole("admin", "see the people page");
  const search = await searchParams;
  const people = await members();
  const done = one(search.done);
  const error = one(search.error);
  return (
    <main className={styles.page}>
      <h1>People</h1>
      <ul className={styles.muted}>
        {ROLES.map((r) => (
          <li key={r}>
            <strong>{r}</strong>: {MAY[r]}
          </li>
        ))}
      </ul>
      {done ? (
        <p className={styles.ok} role="status" data-people-done>
          {done}
        </p>
      ) : null}
      {error ? (
        <p className={styles.error} role="alert" data-people-error>
          {error}
        </p>
      ) : null}
      <table className={styles.table} id="people">
        <thead>
          <tr>
            <th>email</th>
            <th>role</th>
            <th>signed in yet</th>
            <th>invited by</th>
            <th>added</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {people.map((m) => (
            <tr key={m.email} data-member={m.email} data-role={m.role}>
              <td className={styles.mono}>{m.email}</td>
              <td>
                <form action={changeRoleAction} className={styles.form} data-role-form={m.email}>
                  <input type="hidden" name="email" value={m.email} />
                  <select name="role" defaultValue={m.role} aria-label={`role of ${m.email}`}>
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                  <button type="submit">Change</button>
                </form>
              </td>
              <td>{m.signed_in ? "yes" : "not yet"}</td>
              <td>{m.invited_by}</td>
              <td>{utc(m.created_at)}</td>
              <td>
                {m.email === person.email ? (
                  <span className={styles.muted}>you</span>
                ) : (
                  <form action={removeAction} data-remove-form={m.email}>
                    <input type="hidden" name="email" value={m.email} />
                    <button type="submit">Remove</button>
                  </form>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2 id="invite">Invite a person</h2>
      <form action={inviteAction} className={styles.form} id="invite-form">
        <label>
          email <input name="email" type="email" required maxLength={320} />
        </label>
        <label>
          role{" "}
          <select name="role" defaultValue="viewer">
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Invite</button>
      </form>
    </main>
  );
}
