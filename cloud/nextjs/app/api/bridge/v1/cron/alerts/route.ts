// Next.js App Router route: GET /api/bridge/v1/cron/alerts, run by Vercel Cron
// (vercel.json) or any scheduler sending `Authorization: Bearer $CRON_SECRET`.
// The work is in lib/bridge/alerts.ts.

import { connection } from "next/server";
import { handleCronAlerts } from "../../../../../../lib/bridge/alerts";

export async function GET(request: Request): Promise<Response> {
  await connection(); // at request time, never prerendered at build
  return handleCronAlerts(request);
}
