// Where the fleet page's Supabase project is, and the sign-in's redirects.
// Plain Web APIs only (no next/headers), so proxy.ts can use it on Next.js
// 16's proxy and on Next.js 15's Edge middleware alike.

/** Where the project is and its public (anon) key; null when sign-in is not set up. */
export function supabaseSettings(env: NodeJS.ProcessEnv = process.env): { url: string; anonKey: string } | null {
  const url = env.NEXT_PUBLIC_SUPABASE_URL ?? "";
  const anonKey = env.NEXT_PUBLIC_SUPABASE_ANON_KEY ?? "";
  return url && anonKey ? { url, anonKey } : null;
}

/** A path on this site to go back to after signing in ("/bridges" unless `next` is one). */
export function safeNext(next: string | null | undefined): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/bridges";
}

/**
 * `path` on this site as the browser addressed it (its Host header): behind
 * `next start -H 127.0.0.1` the request's own URL says "localhost", where the
 * session cookies would not go.
 */
export function sameSiteUrl(request: Request, path: string): URL {
  const url = new URL(request.url);
  const host = request.headers.get("x-forwarded-host") ?? request.headers.get("host");
  const proto = request.headers.get("x-forwarded-proto");
  return new URL(path, `${proto ? `${proto}:` : url.protocol}//${host ?? url.host}`);
}
