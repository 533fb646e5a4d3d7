// Pruning the ingest log (bridge_ingest_log) past its retention, from the
// alert cron: thousands of old rows per run in short deletes. Each logged
// batch or heartbeat also prunes ten (in SQL), which keeps up by itself;
// this catches up after the retention is shortened.

import type { Pool, PoolClient } from "pg";
import { pool } from "./db";

/**
 * Delete log rows older than the retention, `perRun` at a time and at most
 * `runs` times: each delete is its own short transaction, so ingest never
 * waits on a long one (`db` a client outside a transaction, or the pool).
 * Returns how many rows went.
 */
export async function pruneIngestLog(db: Pool | PoolClient = pool(), perRun = 5000, runs = 10): Promise<number> {
  let gone = 0;
  for (let i = 0; i < runs; i++) {
    const { rows } = await db.query<{ gone: number }>("select public.prune_bridge_ingest_log($1) as gone", [perRun]);
    const n = rows[0]?.gone ?? 0;
    gone += n;
    if (n < perRun) break;
  }
  return gone;
}
