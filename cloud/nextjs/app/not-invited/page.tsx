// /not-invited: a Supabase user who is not one of the fleet's people sees
// this, and nothing of the fleet.

import type { Metadata } from "next";
import { Suspense } from "react";
import { verifiedUser } from "../../lib/fleet/supabase";
import styles from "../bridges/fleet.module.css";
import { signOutAction } from "../sign-in/actions";

export const metadata: Metadata = { title: "Not invited · sensor-bridge", robots: { index: false } };

export default function NotInvitedPage() {
  return (
    <Suspense fallback={null}>
      <NotInvited />
    </Suspense>
  );
}

async function NotInvited() {
  const user = await verifiedUser();
  return (
    <main className={styles.page}>
      <h1>Not on this fleet</h1>
      <p data-not-invited>
        {user ? `You are signed in as ${user.email}, but` : "You are"} not one of this fleet's people: ask an admin to
        invite you.
      </p>
      <form action={signOutAction}>
        <button type="submit">Sign out</button>
      </form>
    </main>
  );
}
