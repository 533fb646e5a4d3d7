// Next.js App Router route: POST /api/bridge/v1/ingest (sensor-bridge ingest contract v1).
// The work is in lib/bridge/ingest.ts so it runs without Next.js too.

import { handleIngest } from "../../../../../lib/bridge/ingest";

export const runtime = "nodejs"; // pg and zlib need Node, not the Edge runtime
export const dynamic = "force-dynamic"; // never cache a POST
export const maxDuration = 30;

export async function POST(request: Request): Promise<Response> {
  return handleIngest(request);
}
