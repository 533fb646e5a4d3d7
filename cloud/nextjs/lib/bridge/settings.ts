// Limits and settings of the bridge routes, read from the environment.
//
// Every value has a default that suits a Vercel deployment; set the variable
// only to change it. They are read on each call (cheap) so a long-running
// `next start` sees the same rules as a fresh serverless instance.

export interface BridgeSettings {
  /** Largest request body as sent (compressed or not). Vercel itself refuses
   * bodies over 4.5 MB with its own 413; answering 413 first keeps the reply
   * ours, and 413 tells the appliance to halve its batch. */
  maxBodyBytes: number;
  /** Largest body after gunzip: a small gzip body can inflate enormously. */
  maxJsonBytes: number;
  /** Most records in one batch (the appliance's default batch_size is 500). */
  maxRecords: number;
  /** Sustained requests per minute per bridge (ingest + heartbeat); 0 = no limit. */
  ratePerMinute: number;
  /** Requests a bridge may send in a burst before the rate applies. */
  rateBurst: number;
  /** Retry-After (seconds) sent with 503 when the database is unavailable. */
  retryAfterS: number;
}

export class ConfigError extends Error {}

export function envWholeNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new ConfigError(`${name} must be a whole number >= 0, not ${JSON.stringify(raw)}`);
  }
  return value;
}

export function bridgeSettings(): BridgeSettings {
  return {
    maxBodyBytes: envWholeNumber("BRIDGE_MAX_BODY_BYTES", 4 * 1024 * 1024),
    maxJsonBytes: envWholeNumber("BRIDGE_MAX_JSON_BYTES", 16 * 1024 * 1024),
    maxRecords: envWholeNumber("BRIDGE_MAX_RECORDS", 2000),
    ratePerMinute: envWholeNumber("BRIDGE_RATE_PER_MIN", 120),
    rateBurst: envWholeNumber("BRIDGE_RATE_BURST", 60),
    retryAfterS: envWholeNumber("BRIDGE_RETRY_AFTER_S", 30),
  };
}

