// /sign-in: the fleet page's sign-in (Supabase Auth): email + password, or a
// link by email. Where the visitor was going comes along in `next`.

import type { Metadata } from "next";
import { Suspense } from "react";
import { safeNext } from "../../lib/fleet/supabase";
import styles from "../bridges/fleet.module.css";
import { magicLinkAction, signInAction } from "./actions";

export const metadata: Metadata = { title: "Sign in · sensor-bridge", robots: { index: false } };

type Search = Promise<Record<string, string | string[] | undefined>>;

export default function SignInPage({ searchParams }: { searchParams: Search }) {
  return (
    <Suspense fallback={null}>
      <SignIn searchParams={searchParams} />
    </Suspense>
  );
}

function one(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

async function SignIn({ searchParams }: { searchParams: Search }) {
  const search = await searchParams;
  const next = safeNext(one(search.next));
  const error = one(search.error);
  const sent = one(search.sent);
  return (
    <main className={styles.page}>
      <h1>Sign in</h1>
      <p className={styles.muted}>The fleet page is for the people an admin has invited.</p>
      {one(search.signed_out) ? (
        <p className={styles.ok} role="status" data-signed-out>
          You are signed out.
        </p>
      ) : null}
      {sent ? (
        <p className={styles.ok} role="status" data-link-sent>
          If {sent} may sign in here, a link is on its way: open it in this browser.
        </p>
      ) : null}
      {error ? (
        <p className={styles.error} role="alert" data-sign-in-error>
          {error}
        </p>
      ) : null}
      <form action={signInAction} className={styles.form} id="password-form">
        <input type="hidden" name="next" value={next} />
        <label>
          email <input name="email" type="email" required autoComplete="username" defaultValue={one(search.email)} />
        </label>
        <label>
          password <input name="password" type="password" required autoComplete="current-password" />
        </label>
        <button type="submit">Sign in</button>
      </form>
      <h2>No password?</h2>
      <form action={magicLinkAction} className={styles.form} id="link-form">
        <input type="hidden" name="next" value={next} />
        <label>
          email <input name="email" type="email" required autoComplete="username" />
        </label>
        <button type="submit">Email me a link</button>
      </form>
    </main>
  );
}
