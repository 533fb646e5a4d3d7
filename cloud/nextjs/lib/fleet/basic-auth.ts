// Who may see the fleet page: HTTP basic auth against FLEET_USER and
// FLEET_PASSWORD. Plain Web APIs only, so it runs in Next.js 15's Edge
// middleware as well as in Next.js 16's proxy and in the pages themselves.

export type FleetAccess = "off" | "denied" | "allowed";

const REALM = 'Basic realm="sensor-bridge fleet", charset="UTF-8"';

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Equal bytes, in time that depends on the length only. */
function sameText(presented: string, expected: string): boolean {
  const a = utf8(presented);
  const b = utf8(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i += 1) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

function basicCredentials(header: string | null): { user: string; password: string } | null {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) return null;
  let decoded: string;
  try {
    const binary = atob(match[1]);
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** "off" when FLEET_USER or FLEET_PASSWORD is unset, else whether `authorization` carries them. */
export function fleetAccess(authorization: string | null, env: NodeJS.ProcessEnv = process.env): FleetAccess {
  const user = env.FLEET_USER ?? "";
  const password = env.FLEET_PASSWORD ?? "";
  if (user === "" || password === "") return "off";
  const presented = basicCredentials(authorization);
  if (presented === null) return "denied";
  const userOk = sameText(presented.user, user);
  const passwordOk = sameText(presented.password, password);
  return userOk && passwordOk ? "allowed" : "denied";
}

/** The signed-in fleet user's name (from basic auth), or null when the credentials do not let them in. */
export function fleetUser(authorization: string | null, env: NodeJS.ProcessEnv = process.env): string | null {
  if (fleetAccess(authorization, env) !== "allowed") return null;
  return basicCredentials(authorization)?.user ?? null;
}

/**
 * The answer for a fleet page request that may not see it: 404 when the
 * fleet page is off, 401 with the browser's sign-in challenge when the
 * credentials are missing or wrong; null to let it through.
 */
export function fleetGate(request: Request): Response | null {
  const access = fleetAccess(request.headers.get("authorization"));
  if (access === "allowed") return null;
  const headers = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
  if (access === "off") return new Response("Not found\n", { status: 404, headers });
  return new Response("Sign in to see the fleet.\n", {
    status: 401,
    headers: { ...headers, "www-authenticate": REALM },
  });
}
