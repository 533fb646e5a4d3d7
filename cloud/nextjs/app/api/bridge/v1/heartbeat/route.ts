// Next.js App Router route: POST /api/bridge/v1/heartbeat (sensor-bridge heartbeat v1).
// The work is in lib/bridge/heartbeat.ts. No segment config (`dynamic`,
// `runtime`): Next.js 16 with cacheComponents refuses it, and a route handler
// runs on Node.js (which pg needs) by default on 15 and 16 alike.

import { handleHeartbeat } from "../../../../../lib/bridge/heartbeat";

export async function POST(request: Request): Promise<Response> {
  return handleHeartbeat(request);
}
