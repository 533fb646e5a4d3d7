// POST /api/bridge/v1/heartbeat: the appliance's periodic "I am alive" with
// its state, outbox counters, per-sensor state and host figures. Stored as
// the bridge's last heartbeat; stale_bridges() alerts when they stop.
// An adopted bridge also reports its config (config_source, config: a
// trigger in the adoption migration keeps it), and the answer names the
// config version the cloud wants it to run (its newest not refused).

import { withInflationSlot } from "./inflation";
import { acceptBridgeRequest } from "./request";
import { errorResponse, json } from "./http";
import { scanWanted } from "./scan";
import { bridgeSettings, type BridgeSettings } from "./settings";

export async function handleHeartbeat(request: Request): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    const full = bridgeSettings();
    settings = full;
    return await withInflationSlot(request, full, async () => {
      const { bridgeId, text, db } = await acceptBridgeRequest(request, full, { contentTypeOptional: true });
      const { rows } = await db.query<{ at: Date }>(
        "select public.record_bridge_heartbeat($1, $2::jsonb) as at",
        [bridgeId, text],
      );
      const at = rows[0]?.at;
      if (!at) throw new Error("record_bridge_heartbeat returned no row");
      const desired = await db.query<{ version: number }>(
        "select version from public.bridge_desired_config($1)",
        [bridgeId],
      );
      return json(200, {
        ok: true,
        received_at: at.toISOString(),
        config_version: desired.rows[0]?.version ?? null,
        scan_wanted: await scanWanted(db, bridgeId),
      });
    });
  } catch (err) {
    return errorResponse(err, settings);
  }
}
