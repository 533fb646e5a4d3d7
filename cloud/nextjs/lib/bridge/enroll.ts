// POST /api/bridge/v1/enroll: a bridge flashed with the fleet's image asks to
// be adopted (docs/ingest-contract.md, "Adoption"). It authenticates with the
// fleet-wide enroll token, which can do nothing else; the body names the
// hardware and the hashes of the bridge's own credential and claim code.
// 202 while nobody has claimed it, 200 with its id once someone has.
//
// The rate limit lives in PostgreSQL (enroll_bridge): serverless instances
// share nothing else, and anyone who knows the URL may call it.

import { bearerKey, sha256 } from "./auth";
import { pool } from "./db";
import { errorResponse, HttpError, json, parseJsonObject, readBodyText, requireJsonContentType } from "./http";
import { bridgeSettings, envWholeNumber } from "./settings";

export const ENROLL_SCHEMA = "sensor-bridge/enroll/v1";
const MAX_BODY_BYTES = 8 * 1024;
const RETRY_AFTER_S = 30;
const HEX64 = /^[0-9a-f]{64}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const PRINTABLE = /^[\x20-\x7e]*$/;
const FIELDS = [
  "schema",
  "serial",
  "machine_id",
  "macs",
  "version",
  "lan_address",
  "hostname",
  "credential_sha256",
  "claim_code_sha256",
];

function text(body: Record<string, unknown>, key: string, max: number, { required = true } = {}): string {
  const value = body[key];
  if (value === undefined && !required) return "";
  if (typeof value !== "string" || (required && value === "")) {
    throw new HttpError(400, `${key}: must be a non-empty string`);
  }
  if (value.length > max || !PRINTABLE.test(value)) {
    throw new HttpError(400, `${key}: must be printable text of at most ${max} characters`);
  }
  return value;
}

/** The enroll body checked against the contract; 400 naming the first key that breaks it. */
export function checkEnrollBody(body: Record<string, unknown>): Record<string, unknown> {
  // as everywhere in the contract, a key the receiver does not know is refused: a typo must not pass
  const unknown = Object.keys(body).filter((k) => !FIELDS.includes(k));
  if (unknown.length) throw new HttpError(400, `enroll: unknown key(s) ${unknown.join(", ")}`);
  const missing = FIELDS.filter((k) => !(k in body));
  if (missing.length) throw new HttpError(400, `enroll: missing key(s) ${missing.join(", ")}`);
  if (body.schema !== ENROLL_SCHEMA) throw new HttpError(400, `schema: must be "${ENROLL_SCHEMA}"`);
  const macs = body.macs;
  if (!Array.isArray(macs) || macs.length > 8 || !macs.every((m) => typeof m === "string" && MAC.test(m))) {
    throw new HttpError(400, 'macs: must be a list of at most 8 addresses like "dc:a6:32:01:02:03"');
  }
  for (const key of ["credential_sha256", "claim_code_sha256"]) {
    const value = body[key];
    if (typeof value !== "string" || !HEX64.test(value)) {
      throw new HttpError(400, `${key}: must be 64 lowercase hex digits (a SHA-256)`);
    }
  }
  return {
    serial: text(body, "serial", 64),
    machine_id: text(body, "machine_id", 64, { required: false }),
    macs: macs.map((m: string) => m.toLowerCase()),
    version: text(body, "version", 64),
    lan_address: text(body, "lan_address", 64, { required: false }),
    hostname: text(body, "hostname", 64, { required: false }),
    credential_sha256: body.credential_sha256,
    claim_code_sha256: body.claim_code_sha256,
  };
}

/** The caller's address as the platform saw it (Vercel sets x-forwarded-for itself). */
export function sourceAddress(request: Request): string {
  const forwarded = request.headers.get("x-forwarded-for")?.split(",")[0]?.trim();
  return (forwarded || request.headers.get("x-real-ip") || "unknown").slice(0, 64);
}

export async function handleEnroll(request: Request): Promise<Response> {
  const settings = { retryAfterS: 30 };
  try {
    const base = bridgeSettings();
    const token = bearerKey(request);
    requireJsonContentType(request);
    const limits = { ...base, maxBodyBytes: MAX_BODY_BYTES, maxJsonBytes: MAX_BODY_BYTES };
    const body = checkEnrollBody(parseJsonObject(await readBodyText(request, limits)));
    const perMinute = envWholeNumber("BRIDGE_ENROLL_PER_MIN", 30);
    const { rows } = await pool().query<{ answer: Record<string, unknown> }>(
      "select public.enroll_bridge($1, $2::jsonb, $3, $4) as answer",
      [sha256(token).toString("hex"), JSON.stringify(body), sourceAddress(request), perMinute],
    );
    const answer = rows[0]?.answer ?? {};
    switch (answer.status) {
      case 401:
        throw new HttpError(401, "enroll token unknown or revoked", {
          "www-authenticate": 'Bearer realm="sensor-bridge enroll"',
        });
      case 429: {
        const wait = String(answer.retry_after_s ?? 60);
        throw new HttpError(429, `too many enroll calls; retry in ${wait} s`, { "retry-after": wait });
      }
      case 200:
        return json(200, {
          state: "claimed",
          bridge_id: answer.bridge_id,
          timezone: answer.timezone ?? null,
          label: answer.label ?? "",
        });
      default:
        return json(202, { state: "unclaimed", retry_after_s: RETRY_AFTER_S });
    }
  } catch (err) {
    return errorResponse(err, settings);
  }
}
