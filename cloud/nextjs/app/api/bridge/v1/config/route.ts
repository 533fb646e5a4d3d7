// Next.js App Router route: GET /api/bridge/v1/config (a claimed bridge fetches its desired config).
// The work is in lib/bridge/config.ts.

import { handleConfig } from "../../../../../lib/bridge/config";

export async function GET(request: Request): Promise<Response> {
  return handleConfig(request);
}
