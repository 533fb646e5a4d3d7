// Next.js App Router route: GET /api/bridge/v1/stale, for a Vercel cron or an
// uptime monitor: 200 when nothing is stale, 503 with the list otherwise.
// Needs CRON_SECRET. The work is in lib/bridge/stale.ts.

import { handleStale } from "../../../../../lib/bridge/stale";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function GET(request: Request): Promise<Response> {
  return handleStale(request);
}
