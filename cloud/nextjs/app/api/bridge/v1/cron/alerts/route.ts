// Next.js App Router route: GET /api/bridge/v1/cron/alerts, run by Vercel Cron
// (vercel.json) or any scheduler sending `Authorization: Bearer $CRON_SECRET`.
// The work is in lib/bridge/alerts.ts. No segment config: a GET that reads
// the request's headers is dynamic by itself, and it runs on Node (pg).

import { handleCronAlerts } from "../../../../../../lib/bridge/alerts";

export async function GET(request: Request): Promise<Response> {
  return handleCronAlerts(request);
}
