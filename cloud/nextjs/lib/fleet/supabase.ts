// Supabase Auth for the fleet page, only through the official libraries:
// @supabase/ssr's server client (the session lives in the cookies it manages)
// and supabase-js's admin API for invites (service-role key, server only).
// Nothing here calls the auth server's URLs itself.

import { createServerClient } from "@supabase/ssr";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { cookies } from "next/headers";
import { supabaseSettings } from "./supabase-env";

export { safeNext, sameSiteUrl, supabaseSettings } from "./supabase-env";

/**
 * A server client for this request (pages, server actions, route handlers),
 * reading and writing the session cookies. A new one per request, as the
 * library asks. Pages cannot set cookies; proxy.ts refreshes them instead.
 */
export async function serverSupabase(): Promise<SupabaseClient> {
  const settings = supabaseSettings();
  if (settings === null) throw new Error("NEXT_PUBLIC_SUPABASE_URL and NEXT_PUBLIC_SUPABASE_ANON_KEY are not set");
  const store = await cookies();
  return createServerClient(settings.url, settings.anonKey, {
    cookies: {
      getAll: () => store.getAll(),
      setAll: (list) => {
        try {
          for (const { name, value, options } of list) store.set(name, value, options);
        } catch {
          // a page's render cannot set cookies; proxy.ts already refreshed them
        }
      },
    },
  });
}

/** The admin API (invites), with the service-role key; null when it is not set. */
export function adminSupabase(): SupabaseClient | null {
  const settings = supabaseSettings();
  const key = process.env.SUPABASE_SERVICE_ROLE_KEY ?? "";
  if (settings === null || key === "") return null;
  return createClient(settings.url, key, { auth: { persistSession: false, autoRefreshToken: false } });
}

/** The signed-in Supabase user, verified by the auth server (`auth.getUser()`), or null. */
export async function verifiedUser(): Promise<{ id: string; email: string } | null> {
  if (supabaseSettings() === null) return null;
  const { data, error } = await (await serverSupabase()).auth.getUser();
  if (error || !data.user?.email) return null;
  return { id: data.user.id, email: data.user.email };
}

