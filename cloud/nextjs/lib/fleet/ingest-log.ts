// The ingest log as the fleet page reads and sets it: one bridge's batches
// and heartbeats, newest first, a page of 100 at a time (the index
// bridge_ingest_log_bridge_newest), and the fleet-wide retention in days.
// The rows are written by the SQL functions that take a batch or a
// heartbeat (migration 20261203102000_sensor_bridge_ingest_log.sql).

import { pool } from "../bridge/db";

export const LOG_PAGE = 100;

export type LogKind = "batch" | "heartbeat" | "";

export interface LogRow {
  id: string;
  kind: "batch" | "heartbeat";
  received_at: Date;
  batch_id: string | null;
  state: string | null;
  records: number;
  new_readings: number;
  newer_revision: number;
  unchanged: number;
  refused: number;
  refused_ids: { id: string; error: string }[];
  refused_more: number;
}

export interface LogPage {
  rows: LogRow[];
  /** the id to pass as `before` for the next (older) page, or null at the end */
  older: string | null;
}

export interface Retention {
  keep_days: number;
  changed_by: string | null;
  changed_at: Date | null;
}

/** One page of a bridge's log, newest first; `before` an id from the previous page. */
export async function ingestLog(bridgeId: string, kind: LogKind, before: string): Promise<LogPage> {
  const { rows } = await pool().query<LogRow>(
    // l.id, not id: the output column "id" is text, and would sort 99 after 130
    `select l.id::text as id, l.kind, l.received_at, l.batch_id, l.state, l.records, l.new_readings,
            l.newer_revision, l.unchanged, l.refused, l.refused_ids, l.refused_more
       from public.bridge_ingest_log l
      where l.bridge_id = $1 and ($2 = '' or l.kind = $2) and ($3 = '' or l.id < $3::bigint)
      order by l.id desc
      limit $4`,
    [bridgeId, kind, /^\d{1,18}$/.test(before) ? before : "", LOG_PAGE + 1],
  );
  const more = rows.length > LOG_PAGE;
  const page = rows.slice(0, LOG_PAGE);
  return { rows: page, older: more ? (page[page.length - 1]?.id ?? null) : null };
}

export async function retention(): Promise<Retention> {
  const { rows } = await pool().query<Retention>(
    "select keep_days, changed_by, changed_at from public.bridge_ingest_log_settings",
  );
  return rows[0] ?? { keep_days: 90, changed_by: null, changed_at: null };
}

/**
 * Keep the log `days` days (1..3650); the database refuses anything else with
 * a message naming keep_days, and records the change in the audit log (by, from `source`).
 */
export async function setRetention(days: number, by: string, source: string): Promise<void> {
  await pool().query("select public.set_bridge_ingest_log_keep($1::int, $2, $3)", [days, by, source]);
}
