// What every bridge request goes through before its SQL call: bearer key,
// JSON content type, size-limited (gzip) body, bridge_id, key check, budget.
//
// The order matters to the appliance: a missing key is 401 before anything
// is read; a body that cannot name its bridge is 400 (there is no key to
// check it against); a wrong key is 401 only once the bridge is known.

import type { Pool } from "pg";
import { authenticateBridge, bearerKey, spendRequestBudget } from "./auth";
import { pool } from "./db";
import { HttpError, parseJsonObject, readBodyText, requireJsonContentType } from "./http";
import type { BridgeSettings } from "./settings";

export interface BridgeRequest {
  bridgeId: string;
  /** the JSON text exactly as received (after gunzip): it goes to SQL as is */
  text: string;
  body: Record<string, unknown>;
  db: Pool;
}

export async function acceptBridgeRequest(
  request: Request,
  settings: BridgeSettings,
  { contentTypeOptional = false } = {},
): Promise<BridgeRequest> {
  const key = bearerKey(request);
  requireJsonContentType(request, { allowMissing: contentTypeOptional });
  const text = await readBodyText(request, settings);
  const body = parseJsonObject(text);
  const bridgeId = body.bridge_id;
  if (typeof bridgeId !== "string" || bridgeId === "" || bridgeId.length > 128) {
    throw new HttpError(400, "bridge_id: must be a non-empty string");
  }
  const db = pool();
  await authenticateBridge(db, bridgeId, key);
  spendRequestBudget(bridgeId, settings);
  return { bridgeId, text, body, db };
}
