// Next.js App Router route: POST /api/bridge/v1/scan (a bridge reports the scan
// of the store's network the fleet page asked for). The work is in lib/bridge/scan.ts.

import { handleScanReport } from "../../../../../lib/bridge/scan";

export async function POST(request: Request): Promise<Response> {
  return handleScanReport(request);
}
