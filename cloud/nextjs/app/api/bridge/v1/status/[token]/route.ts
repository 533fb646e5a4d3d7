// Next.js App Router route: GET /api/bridge/v1/status/<STATUS_TOKEN>, for uptime
// monitors that cannot send headers: 200 when nothing is wrong, 503 otherwise.
// The work is in lib/bridge/status.ts.

import { connection } from "next/server";
import { handleStatus } from "../../../../../../lib/bridge/status";

export async function GET(request: Request, context: { params: Promise<{ token: string }> }): Promise<Response> {
  await connection(); // at request time, never prerendered at build
  const { token } = await context.params;
  return handleStatus(request, token);
}
