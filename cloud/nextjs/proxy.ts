// HTTP basic auth in front of the fleet page (/bridges), from FLEET_USER and
// FLEET_PASSWORD. A page cannot answer with `WWW-Authenticate`, a proxy can,
// so a browser shows its sign-in prompt. Unset: /bridges answers 404.
//
// Next.js 16 calls this file proxy.ts; on Next.js 15 name it middleware.ts
// (same content). Already have one? Merge it: see cloud/README.md, "Fleet page".

import { NextResponse, type NextRequest } from "next/server";
import { fleetGate } from "./lib/fleet/basic-auth";

export default function proxy(request: NextRequest): Response {
  return fleetGate(request) ?? NextResponse.next();
}

export const config = {
  matcher: ["/bridges", "/bridges/:path*"],
};
