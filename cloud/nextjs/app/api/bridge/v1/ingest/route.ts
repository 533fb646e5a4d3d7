// Next.js App Router route: POST /api/bridge/v1/ingest (sensor-bridge ingest contract v1).
// The work is in lib/bridge/ingest.ts. No segment config (`dynamic`,
// `runtime`): Next.js 16 with cacheComponents refuses it, a POST is never
// prerendered, and a route handler runs on Node.js (pg, zlib) by default.

import { handleIngest } from "../../../../../lib/bridge/ingest";

export async function POST(request: Request): Promise<Response> {
  return handleIngest(request);
}
