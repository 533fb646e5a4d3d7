// The fleet page's gate (lib/fleet/proxy.ts): Supabase Auth session cookies
// refreshed, signed-out visitors of /bridges sent to /sign-in, basic auth as
// an opt-in read-only view.
//
// Next.js 16 calls this file proxy.ts; on Next.js 15 name it middleware.ts
// (same content). Already have one? Merge it: see cloud/README.md, "Fleet page".

import { fleetProxy } from "./lib/fleet/proxy";

export default fleetProxy;

export const config = {
  matcher: ["/bridges", "/bridges/:path*", "/sign-in", "/not-invited", "/auth/:path*"],
};
