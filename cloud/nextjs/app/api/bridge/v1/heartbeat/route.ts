// Next.js App Router route: POST /api/bridge/v1/heartbeat (sensor-bridge heartbeat v1).
// The work is in lib/bridge/heartbeat.ts so it runs without Next.js too.

import { handleHeartbeat } from "../../../../../lib/bridge/heartbeat";

export const runtime = "nodejs"; // pg needs Node, not the Edge runtime
export const dynamic = "force-dynamic";
export const maxDuration = 30;

export async function POST(request: Request): Promise<Response> {
  return handleHeartbeat(request);
}
