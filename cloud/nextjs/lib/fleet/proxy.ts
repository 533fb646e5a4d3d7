// In front of the fleet page (/bridges...) and the sign-in pages:
//   * refreshes the Supabase Auth session cookies, as @supabase/ssr documents
//     for Next.js (pages cannot set cookies, the proxy can);
//   * sends a signed-out visitor of /bridges to /sign-in?next=<where they were going>;
//   * HTTP basic auth (FLEET_USER / FLEET_PASSWORD, opt-in, read-only): a
//     request that carries it is let through when right and answered 401
//     with the browser's challenge when wrong; with Supabase not set up it is
//     the only way in, as before. Neither set up: /bridges answers 404.
// The pages and actions check the person again themselves (guard.ts).
// proxy.ts uses it; an app with its own proxy/middleware calls it for these paths.

import { createServerClient } from "@supabase/ssr";
import { NextResponse, type NextRequest } from "next/server";
import { fleetAccess, fleetGate } from "./basic-auth";
import { sameSiteUrl, supabaseSettings } from "./supabase-env";

/** The fleet page's gate for one request (see the top of this file). */
export async function fleetProxy(request: NextRequest): Promise<Response> {
  const fleetPage = request.nextUrl.pathname === "/bridges" || request.nextUrl.pathname.startsWith("/bridges/");
  const settings = supabaseSettings();
  const basic = fleetAccess(request.headers.get("authorization"));
  if (settings === null || (fleetPage && request.headers.has("authorization") && basic !== "off")) {
    return fleetPage ? (fleetGate(request) ?? NextResponse.next()) : NextResponse.next();
  }

  let response = NextResponse.next({ request });
  const supabase = createServerClient(settings.url, settings.anonKey, {
    cookies: {
      getAll: () => request.cookies.getAll(),
      setAll: (list, headers) => {
        for (const { name, value } of list) request.cookies.set(name, value);
        response = NextResponse.next({ request });
        for (const { name, value, options } of list) response.cookies.set(name, value, options);
        for (const [key, value] of Object.entries(headers ?? {})) response.headers.set(key, value);
      },
    },
  });
  // getUser() asks the auth server (and refreshes an expired session); nothing
  // may run between creating the client and this call, as the library asks.
  const {
    data: { user },
  } = await supabase.auth.getUser();
  if (user === null && fleetPage) {
    const next = request.nextUrl.pathname + request.nextUrl.search;
    const away = NextResponse.redirect(sameSiteUrl(request, `/sign-in?${new URLSearchParams({ next }).toString()}`));
    for (const cookie of response.cookies.getAll()) away.cookies.set(cookie);
    return away;
  }
  return response;
}
