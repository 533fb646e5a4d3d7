// GET /api/bridge/v1/config: a claimed bridge fetches the config the cloud
// wants it to run (docs/ingest-contract.md, "Config from the cloud").
//
// The bridge names itself with X-Bridge-Id (a GET has no body to carry
// bridge_id) and authenticates with its own credential, exactly as ingest
// does. The version sent is its newest one it has not refused; ETag is that
// version, so a bridge that already runs it gets 304 and no passwords travel.

import { authenticateBridge, bearerKey, spendRequestBudget } from "./auth";
import { pool } from "./db";
import { errorResponse, HttpError, json } from "./http";
import { scanWanted } from "./scan";
import { bridgeSettings } from "./settings";

export const CONFIG_SCHEMA = "sensor-bridge/config/v1";

/** True when If-None-Match names `etag` (a list, a weak tag or `*` count too). */
export function etagMatches(ifNoneMatch: string | null, etag: string): boolean {
  if (ifNoneMatch === null) return false;
  return ifNoneMatch
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .some((tag) => tag === "*" || tag === etag);
}

export async function handleConfig(request: Request): Promise<Response> {
  let settings = { retryAfterS: 30 };
  try {
    const full = bridgeSettings();
    settings = full;
    const key = bearerKey(request);
    const bridgeId = request.headers.get("x-bridge-id") ?? "";
    if (bridgeId === "" || bridgeId.length > 128) {
      throw new HttpError(400, "X-Bridge-Id: the header must name the bridge");
    }
    const db = pool();
    await authenticateBridge(db, bridgeId, key);
    spendRequestBudget(bridgeId, full);
    const { rows } = await db.query<{ version: number; document: unknown; made_by: string; made_at: Date }>(
      "select version, document, made_by, made_at from public.bridge_desired_config($1)",
      [bridgeId],
    );
    const desired = rows[0];
    // A scan the fleet page asked for rides on every answer: a bridge with no config yet polls here.
    const scan = await scanWanted(db, bridgeId);
    const scanHeader: Record<string, string> = scan === null ? {} : { "x-scan-wanted": String(scan) };
    if (!desired) return json(404, { error: "no config yet" }, scanHeader);
    const etag = `"${desired.version}"`;
    if (etagMatches(request.headers.get("if-none-match"), etag)) {
      return new Response(null, { status: 304, headers: { etag, "cache-control": "no-store", ...scanHeader } });
    }
    return json(
      200,
      {
        schema: CONFIG_SCHEMA,
        bridge_id: bridgeId,
        version: desired.version,
        made_by: desired.made_by,
        made_at: desired.made_at.toISOString().replace(/\.\d{3}Z$/, "Z"),
        config: desired.document,
      },
      { etag, ...scanHeader },
    );
  } catch (err) {
    return errorResponse(err, settings);
  }
}
