// The fleet's audit log from the app's side: recording a change the database
// functions do not record themselves (member changes), retiring and rotating a
// bridge through the functions that record them, and reading the log for the
// bridge page and /bridges/audit, newest first. The table is append-only
// (cloud/supabase/migrations/*_sensor_bridge_audit.sql): nothing here updates
// or deletes a row.

import { createHash, randomBytes } from "node:crypto";
import { pool } from "../bridge/db";

export interface AuditRow {
  id: string; // bigint, as text
  at: Date;
  actor: string;
  source: string;
  action: string;
  bridge_id: string | null;
  detail: Record<string, unknown>;
}

export const AUDIT_PAGE = 50;

/**
 * Append one row (e.g. actor "ops@chain.example", action "member add",
 * bridge null, detail {"member": ..., "after": {"role": "installer"}}).
 * Never put a secret in `detail`: the row can never be removed.
 */
export async function recordAudit(
  actor: string,
  source: string,
  action: string,
  bridgeId: string | null,
  detail: Record<string, unknown> = {},
): Promise<string> {
  const { rows } = await pool().query<{ id: string }>(
    "select public.fleet_audit_record($1, $2, $3, $4, $5::jsonb)::text as id",
    [actor, source, action, bridgeId, JSON.stringify(detail)],
  );
  return rows[0]?.id ?? "";
}

/** Rows newest first: one bridge's (or the fleet's, with null), older than `before` (an id) when paging. */
export async function auditRows(bridgeId: string | null, before: string | null, limit = AUDIT_PAGE): Promise<AuditRow[]> {
  // "order by a.id": the number; a bare "id" would sort the text output column ("9" after "10")
  const { rows } = await pool().query<AuditRow>(
    `select a.id::text as id, a.at, a.actor, a.source, a.action, a.bridge_id, a.detail
       from public.fleet_audit_log a
      where ($1::text is null or a.bridge_id = $1)
        and ($2::bigint is null or a.id < $2::bigint)
      order by a.id desc
      limit $3`,
    [bridgeId, before && /^\d{1,18}$/.test(before) ? before : null, limit],
  );
  return rows;
}

function plain(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function table(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/**
 * The before/after of a row in a few words, e.g. "retired: no → yes" or, for
 * a config version, "version 3: sensors[entrance-1].password: changed; update: added".
 * Plain text: the page renders it as text, never as HTML.
 */
export function auditSummary(row: Pick<AuditRow, "detail">): string {
  const detail = table(row.detail);
  const parts: string[] = [];
  if (Array.isArray(detail.changes)) {
    const changes = detail.changes.map(plain);
    parts.push(`version ${plain(detail.version)}: ${changes.length ? changes.join("; ") : "no keys changed"}`);
  }
  const before = table(detail.before);
  const after = table(detail.after);
  for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])]) {
    parts.push(key in before ? `${key}: ${plain(before[key])} → ${plain(after[key])}` : `${key}: ${plain(after[key])}`);
  }
  for (const [key, value] of Object.entries(detail)) {
    if (!["changes", "version", "before", "after"].includes(key)) parts.push(`${key}: ${plain(value)}`);
  }
  return parts.join(" · ");
}

export type RetireAnswer = { ok: true; already: boolean } | { ok: false; error: string };

/** Retire a bridge (its key refused, no alerts; readings stay), recorded as `who` from `source`. */
export async function retireBridge(bridgeId: string, who: string, source: string): Promise<RetireAnswer> {
  const { rows } = await pool().query<{ answer: RetireAnswer }>("select public.retire_bridge($1, $2, $3) as answer", [
    bridgeId,
    who,
    source,
  ]);
  return rows[0]?.answer ?? { ok: false, error: "no answer from the database" };
}

/**
 * A new key for the bridge (the old one stops working at once; a retired
 * bridge is back), recorded as `who`. Returns the key, to be shown once, or
 * null for an unknown bridge. Only its SHA-256 is stored, as add-bridge does.
 */
export async function rotateBridgeKey(bridgeId: string, who: string, source: string): Promise<string | null> {
  const key = `sbk_${randomBytes(32).toString("base64url")}`;
  const hash = createHash("sha256").update(key, "utf8").digest("hex");
  const { rows } = await pool().query<{ id: string | null }>(
    "select public.rotate_bridge_key($1, $2, '', $3, $4) as id",
    [bridgeId, hash, who, source],
  );
  return rows[0]?.id ? key : null;
}
