// The line above every fleet page: who is signed in, with which role, the
// people page for admins, and the sign-out button (a POST, a server action).

import Link from "next/link";
import { allows, requireFleetViewer } from "../../lib/fleet/guard";
import { signOutAction } from "../sign-in/actions";
import styles from "./fleet.module.css";

export async function SessionBar() {
  const person = await requireFleetViewer();
  const basic = person.email.startsWith("basic auth (");
  return (
    <nav className={`${styles.page} ${styles.muted}`} data-person={person.email} data-role={person.role}>
      {basic ? "read-only view" : "signed in as"} <strong>{person.email}</strong> ({person.role})
      {allows(person.role, "admin") ? (
        <>
          {" "}
          · <Link href="/bridges/people">people</Link>
        </>
      ) : null}
      {basic ? null : (
        <form action={signOutAction} style={{ display: "inline" }} id="sign-out">
          {" "}
          · <button type="submit">Sign out</button>
        </form>
      )}
    </nav>
  );
}
