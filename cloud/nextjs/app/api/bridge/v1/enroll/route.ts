// Next.js App Router route: POST /api/bridge/v1/enroll (adoption: a bridge asks to be claimed).
// The work is in lib/bridge/enroll.ts.

import { handleEnroll } from "../../../../../lib/bridge/enroll";

export async function POST(request: Request): Promise<Response> {
  return handleEnroll(request);
}
