// GET /api/bridge/v1/stale: what has gone quiet, for alerting.
//
// Answers 200 when every bridge heartbeats and every sensor delivers final
// periods, and 503 with the list otherwise, so that a Vercel cron (which
// sends `Authorization: Bearer $CRON_SECRET`) or an uptime monitor such as
// UptimeRobot can alert on the status code alone. Thresholds:
// ?bridge_minutes= (default 5) and ?sensor_hours= (default 2).

import { requireCronSecret } from "./auth";
import { pool } from "./db";
import { HttpError, errorResponse, json } from "./http";
import { bridgeSettings, type BridgeSettings } from "./settings";

function threshold(params: URLSearchParams, name: string, fallback: number, max: number): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new HttpError(400, `${name} must be a number > 0 and <= ${max}`);
  }
  return value;
}

const TEN_YEARS_H = 24 * 366 * 10;

export async function handleStale(request: Request): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    settings = bridgeSettings();
    requireCronSecret(request);
    const params = new URL(request.url).searchParams;
    const bridgeMinutes = threshold(params, "bridge_minutes", 5, TEN_YEARS_H * 60);
    const sensorHours = threshold(params, "sensor_hours", 2, TEN_YEARS_H);
    const { rows } = await pool().query<{ bridges: unknown[]; sensors: unknown[] }>(
      `select
         (select coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb)
            from public.stale_bridges($1::float8 * interval '1 minute') b) as bridges,
         (select coalesce(jsonb_agg(to_jsonb(s)), '[]'::jsonb)
            from public.stale_bridge_sensors($2::float8 * interval '1 hour') s) as sensors`,
      [bridgeMinutes, sensorHours],
    );
    const bridges = rows[0]?.bridges ?? [];
    const sensors = rows[0]?.sensors ?? [];
    const ok = bridges.length === 0 && sensors.length === 0;
    return json(ok ? 200 : 503, { ok, stale_bridges: bridges, stale_sensors: sensors });
  } catch (err) {
    return errorResponse(err, settings);
  }
}
