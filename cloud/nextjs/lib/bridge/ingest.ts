// POST /api/bridge/v1/ingest: one batch of records (ingest contract v1, docs/ingest-contract.md).
//
// The route checks what HTTP owns (auth, size, encoding, Idempotency-Key)
// and hands the JSON text to public.ingest_bridge_batch in one call; the SQL
// function validates every record, upserts them keeping the highest revision
// and says which ids it accepted and which it rejected and why.

import { withInflationSlot } from "./inflation";
import { acceptBridgeRequest } from "./request";
import { HttpError, errorResponse, json } from "./http";
import { bridgeSettings, type BridgeSettings } from "./settings";

interface IngestResult {
  accepted: string[];
  rejected: { id: string; error: string }[];
  changed: number;
}

export async function handleIngest(request: Request): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    const full = bridgeSettings();
    settings = full;
    return await withInflationSlot(request, full, () => storeBatch(request, full));
  } catch (err) {
    return errorResponse(err, settings);
  }
}

/** Check what HTTP owns, then one call of ingest_bridge_batch. */
async function storeBatch(request: Request, full: BridgeSettings): Promise<Response> {
  const { bridgeId, text, body, db } = await acceptBridgeRequest(request, full);

  // The same batch_id on every retry of a batch: the header and the body
  // must agree, or the sender is not speaking the contract.
  const idempotencyKey = request.headers.get("idempotency-key");
  if (idempotencyKey === null || idempotencyKey === "") {
    throw new HttpError(400, "Idempotency-Key header is required (the batch_id)");
  }
  if (idempotencyKey !== body.batch_id) {
    throw new HttpError(400, "Idempotency-Key must equal the body's batch_id");
  }
  // The contract names the sender; anything else is not an appliance
  // speaking v1 (the simulated receiver refuses it the same way).
  if (!(request.headers.get("user-agent") ?? "").startsWith("sensor-bridge/")) {
    throw new HttpError(400, "User-Agent: must be sensor-bridge/<version>");
  }
  if (Array.isArray(body.records) && body.records.length > full.maxRecords) {
    throw new HttpError(413, `at most ${full.maxRecords} records per batch; send smaller batches`);
  }

  const { rows } = await db.query<{ result: IngestResult }>(
    "select public.ingest_bridge_batch($1, $2::jsonb) as result",
    [bridgeId, text],
  );
  const result = rows[0]?.result;
  if (!result) throw new Error("ingest_bridge_batch returned no row");
  return json(200, { accepted: result.accepted.length, rejected: result.rejected });
}
