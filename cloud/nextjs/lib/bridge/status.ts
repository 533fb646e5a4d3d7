// GET /api/bridge/v1/status/<token>: the whole fleet for an uptime monitor
// that cannot send headers (UptimeRobot, Pingdom, Better Stack free plans).
//
// 200 "OK" when nothing is wrong, 503 with a short plain-text summary
// otherwise: the same conditions the alert cron opens incidents for,
// evaluated live, so it works with or without a cron. The token (STATUS_TOKEN)
// is compared in constant time; without it set the route does not exist. The
// answer names bridges and sensors and what is wrong, never a key, a reading
// or a camera's error text.

import { secretsEqual } from "./auth";
import { alertThresholds } from "./alert-settings";
import { pool } from "./db";
import { HttpError, errorResponse } from "./http";
import { bridgeSettings, ConfigError, type BridgeSettings } from "./settings";

const MAX_LINES = 20;
const MIN_TOKEN_LENGTH = 16;

const SHORT: Record<string, string> = {
  bridge_silent: "no heartbeat",
  bridge_error: "bridge in error",
  sensor_failing: "camera not answering",
  sensor_silent: "no new counts",
  readings_dropped: "readings dropped",
};

function text(status: number, body: string): Response {
  return new Response(body + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

export async function handleStatus(request: Request, token: string): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    settings = bridgeSettings();
    const expected = process.env.STATUS_TOKEN ?? "";
    if (expected === "") throw new HttpError(404, "not found");
    if (expected.length < MIN_TOKEN_LENGTH) {
      throw new ConfigError(`STATUS_TOKEN must be at least ${MIN_TOKEN_LENGTH} characters`);
    }
    if (!secretsEqual(token, expected)) throw new HttpError(403, "wrong status token");
    const t = alertThresholds();
    const { rows } = await pool().query<{ what: string; bridge_id: string; sensor_id: string; since: Date }>(
      `select what, bridge_id, sensor_id, since
         from public.bridge_alert_conditions($1::float8 * interval '1 minute', $2::float8 * interval '1 minute',
                                             $3::float8 * interval '1 hour')
        order by since, bridge_id, sensor_id`,
      [t.bridgeMinutes, t.sensorMinutes, t.sensorHours],
    );
    if (rows.length === 0) return text(200, "OK: nothing wrong");
    const lines = rows.slice(0, MAX_LINES).map((r) =>
      `${r.bridge_id}${r.sensor_id ? ` ${r.sensor_id}` : ""}: ${SHORT[r.what] ?? r.what} since ${r.since.toISOString()}`);
    if (rows.length > MAX_LINES) lines.push(`... and ${rows.length - MAX_LINES} more`);
    return text(503, [`ALERT: ${rows.length} problem${rows.length === 1 ? "" : "s"}`, ...lines].join("\n"));
  } catch (err) {
    if (err instanceof HttpError) return text(err.status, err.message);
    return errorResponse(err, settings);
  }
}
