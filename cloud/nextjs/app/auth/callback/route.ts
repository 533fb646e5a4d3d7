// /auth/callback: where a sign-in link (magic link, PKCE) lands. The library
// exchanges the code for a session (its code verifier is in a cookie set when
// the link was asked for) and the visitor goes on to where they were going.

import { NextResponse, type NextRequest } from "next/server";
import { sameSiteUrl, safeNext, serverSupabase, supabaseSettings } from "../../../lib/fleet/supabase";

export async function GET(request: NextRequest): Promise<Response> {
  const code = request.nextUrl.searchParams.get("code") ?? "";
  const next = safeNext(request.nextUrl.searchParams.get("next"));
  const back = (query: Record<string, string>) =>
    NextResponse.redirect(sameSiteUrl(request, `/sign-in?${new URLSearchParams({ ...query, next }).toString()}`), 303);
  if (supabaseSettings() === null) return back({ error: "sign-in is not set up on this site" });
  if (!code) return back({ error: "this link has no sign-in code; ask for a new one" });
  const { error } = await (await serverSupabase()).auth.exchangeCodeForSession(code);
  if (error) return back({ error: "this link is used, expired, or was asked for in another browser; ask for a new one" });
  return NextResponse.redirect(sameSiteUrl(request, next), 303);
}
