"use server";
// Signing in and out of the fleet page with Supabase Auth (through
// @supabase/ssr only): email + password, "email me a link" (magic link, PKCE:
// /auth/callback exchanges the code), sign-out. Server actions: Next.js
// refuses them unless the request's Origin is the page's own host (CSRF).

import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { safeNext, serverSupabase, supabaseSettings } from "../../lib/fleet/supabase";

function text(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

function back(query: Record<string, string>): never {
  redirect(`/sign-in?${new URLSearchParams(query).toString()}`);
}

/** This site's origin, as the browser sees it (Next.js has checked Origin against Host). */
async function siteOrigin(): Promise<string> {
  const h = await headers();
  const origin = h.get("origin");
  if (origin) return origin;
  return `${h.get("x-forwarded-proto") ?? "http"}://${h.get("x-forwarded-host") ?? h.get("host")}`;
}

export async function signInAction(form: FormData): Promise<void> {
  const next = safeNext(text(form, "next"));
  if (supabaseSettings() === null) back({ error: "sign-in is not set up on this site (see cloud/README.md)", next });
  const email = text(form, "email");
  const password = typeof form.get("password") === "string" ? (form.get("password") as string) : "";
  if (!email || !password) back({ error: "give your email and password, or ask for a link", next, email });
  const { error } = await (await serverSupabase()).auth.signInWithPassword({ email, password });
  if (error) {
    const why = error.status === 400 ? "wrong email or password" : `the sign-in service did not answer (${error.message})`;
    back({ error: why, next, email });
  }
  redirect(next);
}

export async function magicLinkAction(form: FormData): Promise<void> {
  const next = safeNext(text(form, "next"));
  const email = text(form, "email");
  if (!email) back({ error: "give your email to get a link", next });
  if (supabaseSettings() === null) back({ error: "sign-in is not set up on this site (see cloud/README.md)", next });
  const callback = `${await siteOrigin()}/auth/callback?${new URLSearchParams({ next }).toString()}`;
  const { error } = await (await serverSupabase()).auth.signInWithOtp({
    email,
    // people are invited (an admin, or cloud/bin/bridges member add): no sign-up by link
    options: { emailRedirectTo: callback, shouldCreateUser: false },
  });
  // The same answer whether or not the address has an account, so the form
  // does not tell strangers who is on the team.
  if (error && error.status !== 422 && error.status !== 400) {
    back({ error: `the sign-in service did not answer (${error.message})`, next, email });
  }
  back({ sent: email, next });
}

export async function signOutAction(): Promise<void> {
  if (supabaseSettings() !== null) await (await serverSupabase()).auth.signOut();
  back({ signed_out: "1" });
}
