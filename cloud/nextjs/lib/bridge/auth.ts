// Who is calling: the bearer key checked against the bridge's stored hash,
// and a per-bridge request budget.
//
// The bridge is named by the body's bridge_id; its row holds the SHA-256 of
// the key that cloud/bin/add-bridge printed once. SHA-256 (not bcrypt) is
// right for 256-bit random keys: nothing to guess, and no per-request cost.
// The comparison is constant-time, and an unknown bridge is compared against
// a dummy hash so that it fails the same way a wrong key does.

import { createHash, timingSafeEqual } from "node:crypto";
import type { Pool } from "pg";
import { HttpError } from "./http";
import { ConfigError, type BridgeSettings } from "./settings";

const MAX_KEY_LENGTH = 512;
const DUMMY_HASH = createHash("sha256").update("sensor-bridge: no such bridge").digest();

function unauthorized(message: string): HttpError {
  return new HttpError(401, message, { "www-authenticate": 'Bearer realm="sensor-bridge"' });
}

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** The key from `Authorization: Bearer <key>`, or 401. */
export function bearerKey(request: Request): string {
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  const key = match?.[1];
  if (key === undefined || key.length > MAX_KEY_LENGTH) {
    throw unauthorized("missing or malformed Authorization: Bearer <api_key>");
  }
  return key;
}

/** Constant-time equality of two secrets of any length (compares their hashes). */
export function secretsEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}

/** Resolve when the request carries `Authorization: Bearer $CRON_SECRET` (what Vercel Cron sends); else 401. */
export function requireCronSecret(request: Request): void {
  const secret = process.env.CRON_SECRET;
  if (!secret) throw new ConfigError("CRON_SECRET is not set");
  if (!secretsEqual(request.headers.get("authorization") ?? "", `Bearer ${secret}`)) {
    throw unauthorized("invalid credentials");
  }
}

/** Resolve when `key` belongs to the enabled bridge `bridgeId`; else 401. */
export async function authenticateBridge(db: Pool, bridgeId: string, key: string): Promise<void> {
  const presented = sha256(key);
  const { rows } = await db.query<{ api_key_sha256: string }>(
    "select api_key_sha256 from public.bridges where id = $1 and disabled_at is null",
    [bridgeId],
  );
  const stored = rows.length === 1 && rows[0] ? Buffer.from(rows[0].api_key_sha256, "hex") : DUMMY_HASH;
  const same = stored.length === presented.length && timingSafeEqual(stored, presented);
  if (!same || rows.length !== 1) throw unauthorized("invalid credentials");
}

// Token buckets per bridge, per server instance. On Vercel each instance
// keeps its own, so this bounds a runaway appliance rather than enforcing an
// exact global quota (which would cost a database write per request).
const buckets = new Map<string, { tokens: number; at: number }>();

/** Spend one request of the bridge's budget, or 429 with Retry-After. */
export function spendRequestBudget(bridgeId: string, settings: BridgeSettings, now: number = Date.now()): void {
  if (settings.ratePerMinute === 0) return;
  const perMs = settings.ratePerMinute / 60_000;
  const capacity = Math.max(1, settings.rateBurst);
  const bucket = buckets.get(bridgeId) ?? { tokens: capacity, at: now };
  bucket.tokens = Math.min(capacity, bucket.tokens + (now - bucket.at) * perMs);
  bucket.at = now;
  buckets.set(bridgeId, bucket);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return;
  }
  const waitS = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
  throw new HttpError(429, `too many requests from bridge ${bridgeId}; retry in ${waitS} s`, {
    "retry-after": String(waitS),
  });
}
