// GET /api/bridge/v1/cron/alerts: open and close incidents, and tell people.
//
// Called by Vercel Cron (or any scheduler) with `Authorization: Bearer
// $CRON_SECRET`. One run, in one transaction holding a transaction-level
// advisory lock (so it also works through Supabase's transaction pooler):
//   1. bridge_alerts_refresh() opens an incident per new problem and closes
//      those that cleared;
//   2. bridge_alert_pending() lists what each channel has not been told yet;
//   3. each channel gets one message with all of it; a delivered message is
//      recorded in bridge_alert_deliveries, a failed one is not (so the next
//      run sends it again) and Telegram's retry_after holds the channel back.
// A second run while one holds the lock does nothing and says so, so two
// runs at once send one message, not two. If the process dies between a
// send and the commit, the next run sends that message again (at least
// once); it never skips one.

import type { PoolClient } from "pg";
import { alertFields, alertText, type AlertEvent } from "./alert-message";
import { alertChannels, alertThresholds, type AlertThresholds } from "./alert-settings";
import { sendAlert, type SendOutcome } from "./alert-channels";
import { requireCronSecret } from "./auth";
import { pool } from "./db";
import { errorResponse, json } from "./http";
import { pruneIngestLog } from "./ingest-log";
import { bridgeSettings, type BridgeSettings } from "./settings";

// pg_try_advisory_xact_lock key: "sensor-bridge alerts", any fixed number will do
const ALERT_LOCK = "7358237401";

interface ChannelReport {
  sent: number;
  error?: string;
  held_until?: string;
}

async function refresh(client: PoolClient, t: AlertThresholds): Promise<number> {
  const { rows } = await client.query<{ open: number }>(
    `select public.bridge_alerts_refresh($1::float8 * interval '1 minute', $2::float8 * interval '1 minute',
                                         $3::float8 * interval '1 hour') as open`,
    [t.bridgeMinutes, t.sensorMinutes, t.sensorHours],
  );
  return rows[0]?.open ?? 0;
}

async function recordOutcome(client: PoolClient, name: string, events: AlertEvent[], outcome: SendOutcome): Promise<void> {
  if (outcome.ok) {
    await client.query(
      `insert into public.bridge_alert_deliveries (incident_id, event, channel)
       select unnest($1::bigint[]), unnest($2::text[]), $3
       on conflict do nothing`,
      [events.map((e) => e.incident_id), events.map((e) => e.event), name],
    );
  }
  await client.query(
    `insert into public.bridge_alert_channels as c (channel, hold_until, failures, last_error, last_attempt_at)
     values ($1, now() + $2::float8 * interval '1 second', $3, $4, now())
     on conflict (channel) do update
       set hold_until = excluded.hold_until, last_error = excluded.last_error, last_attempt_at = now(),
           failures = case when excluded.failures = 0 then 0 else c.failures + 1 end`,
    [name, outcome.ok ? 0 : (outcome.retryAfterS ?? 0), outcome.ok ? 0 : 1, outcome.ok ? null : outcome.error],
  );
}

async function notify(client: PoolClient, t: AlertThresholds): Promise<Record<string, ChannelReport>> {
  const channels = alertChannels();
  const report: Record<string, ChannelReport> = {};
  if (channels.size === 0) return report;
  const names = [...channels.keys()];
  const { rows } = await client.query<AlertEvent>("select * from public.bridge_alert_pending($1::text[])", [names]);
  for (const [name, channel] of channels) {
    const events = rows.filter((e) => e.channel === name);
    if (events.length === 0) {
      report[name] = { sent: 0 };
      continue;
    }
    const outcome = await sendAlert(channel, alertText(events, t), alertFields(events));
    await recordOutcome(client, name, events, outcome);
    report[name] = outcome.ok ? { sent: events.length } : { sent: 0, error: outcome.error };
    if (!outcome.ok) console.error(`sensor-bridge alerts: ${name} not delivered: ${outcome.error}`);
  }
  await client.query("select public.bridge_alerts_settle($1::text[])", [names]);
  return report;
}

export async function handleCronAlerts(request: Request): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    settings = bridgeSettings();
    requireCronSecret(request);
    const thresholds = alertThresholds();
    alertChannels(); // a misconfigured channel fails the run before anything changes
    const client = await pool().connect();
    try {
      await client.query("begin");
      const { rows } = await client.query<{ locked: boolean }>(
        "select pg_try_advisory_xact_lock($1::bigint) as locked", [ALERT_LOCK]);
      if (!rows[0]?.locked) {
        await client.query("rollback");
        return json(200, { ok: true, skipped: "another alert run is in progress" });
      }
      const open = await refresh(client, thresholds);
      const channels = await notify(client, thresholds);
      await client.query("commit");
      // after the alert run's transaction: the log's old rows, in short deletes of their own
      const pruned = await pruneIngestLog(client).catch((err: unknown) => {
        console.error("sensor-bridge: ingest log not pruned:", err instanceof Error ? err.message : err);
        return 0;
      });
      const failed = Object.values(channels).some((c) => c.error !== undefined);
      // 502 when a channel failed, so the scheduler's log shows it; the run itself is kept
      return json(failed ? 502 : 200, { ok: !failed, open_incidents: open, channels, ingest_log_pruned: pruned });
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  } catch (err) {
    return errorResponse(err, settings);
  }
}
