// Next.js App Router route: GET /api/bridge/v1/stale, for a Vercel cron or an
// uptime monitor: 200 when nothing is stale, 503 with the list otherwise.
// Needs CRON_SECRET. The work is in lib/bridge/stale.ts.

import { connection } from "next/server";
import { handleStale } from "../../../../../lib/bridge/stale";

export async function GET(request: Request): Promise<Response> {
  // A GET would be prerendered at build time; this one answers from the
  // database at request time (works on Next.js 15 and 16, cacheComponents or not).
  await connection();
  return handleStale(request);
}
