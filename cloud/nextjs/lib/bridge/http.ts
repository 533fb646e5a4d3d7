// HTTP plumbing of the bridge routes: JSON replies, the error -> status
// mapping of the ingest contract, and reading a (possibly gzip) body within
// size limits.
//
// Status codes are the contract's, because the appliance acts on them:
// 400 malformed (it splits the batch and dead-letters the bad records),
// 401 key rejected (it keeps everything and retries slowly), 413 too large
// (it halves the batch), 429 and 5xx try later (it honours Retry-After).

import { gunzip } from "node:zlib";
import { promisify } from "node:util";
import { unstable_rethrow } from "next/navigation";
import { DatabaseError } from "pg";
import { databaseTlsProblem } from "./db-tls";
import { ConfigError, type BridgeSettings } from "./settings";

const gunzipAsync = promisify(gunzip);

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

// SQLSTATEs and socket errors that mean "the database is not available right
// now": the same request will work later, so the appliance must retry.
const TRANSIENT_SQLSTATES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "53000", // insufficient_resources
  "53100", // disk_full
  "53200", // out_of_memory
  "53300", // too_many_connections
  "53400", // configuration_limit_exceeded
  "55P03", // lock_not_available
  "57014", // query_canceled (statement_timeout)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "58000", // system_error
  "XX000", // internal_error
]);
const TRANSIENT_SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"]);

function errorCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** Turn anything a handler threw into the contract's reply. */
export function errorResponse(err: unknown, settings: Pick<BridgeSettings, "retryAfterS">): Response {
  // Next.js signals "render this at request time, not at build" (and other
  // control flow) by throwing; those must reach Next.js, not become a 500.
  unstable_rethrow(err);
  if (err instanceof HttpError) {
    return json(err.status, { error: err.message }, err.headers);
  }
  const retry = { "retry-after": String(settings.retryAfterS) };
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  const tls = databaseTlsProblem(err);
  if (tls !== null) {
    console.error(`sensor-bridge: database TLS failed: ${tls}`);
    return json(503, { error: "database unavailable, try later" }, retry);
  }
  if (err instanceof DatabaseError && code !== undefined) {
    // A PostgreSQL error. Class 22 (data exception) is what the SQL functions
    // raise for a malformed envelope, and what jsonb raises for JSON it cannot
    // store (e.g. \u0000): the request itself is wrong.
    if (code.startsWith("22")) return json(400, { error: message });
    if (code === "28000") return json(401, { error: "invalid credentials" });
    if (code === "54000") return json(413, { error: message });
    if (code.startsWith("08") || TRANSIENT_SQLSTATES.has(code)) {
      console.error(`sensor-bridge: database unavailable (${code}): ${message}`);
      return json(503, { error: "database unavailable, try later" }, retry);
    }
  } else if (
    (code !== undefined && TRANSIENT_SOCKET_CODES.has(code)) ||
    /timeout exceeded when trying to connect|Connection terminated|Query read timeout/i.test(message)
  ) {
    console.error(`sensor-bridge: database unreachable: ${message}`);
    return json(503, { error: "database unavailable, try later" }, retry);
  }
  if (err instanceof ConfigError) {
    console.error(`sensor-bridge: configuration error: ${message}`);
    return json(500, { error: "server misconfigured" }, retry);
  }
  console.error("sensor-bridge: unexpected error:", err);
  return json(500, { error: "internal error" }, retry);
}

/**
 * The body's media type must be JSON. A batch must say so (the contract lists
 * the header); for a heartbeat the contract only names the auth header, so a
 * missing Content-Type is let through there, a wrong one never.
 */
export function requireJsonContentType(request: Request, { allowMissing = false } = {}): void {
  const header = request.headers.get("content-type");
  if (header === null && allowMissing) return;
  const type = (header ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(400, "Content-Type must be application/json");
  }
}

/**
 * The request body as text, gunzipped when Content-Encoding says gzip, within
 * the size limits: 413 for too large (before or after inflating), 400 for an
 * unknown encoding, broken gzip or bytes that are not UTF-8.
 */
export async function readBodyText(request: Request, settings: BridgeSettings): Promise<string> {
  const encoding = (request.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip" && encoding !== "x-gzip") {
    throw new HttpError(400, `Content-Encoding ${encoding} is not supported (use gzip or none)`);
  }
  const tooLarge = new HttpError(413, `body larger than ${settings.maxBodyBytes} bytes; send smaller batches`);
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > settings.maxBodyBytes) throw tooLarge;

  const raw = await readLimited(request, settings.maxBodyBytes, tooLarge);
  let bytes = raw;
  if (encoding !== "identity") {
    try {
      bytes = await gunzipAsync(raw, { maxOutputLength: settings.maxJsonBytes });
    } catch (err) {
      if (err instanceof RangeError || errorCode(err) === "ERR_BUFFER_TOO_LARGE") {
        throw new HttpError(413, `body inflates beyond ${settings.maxJsonBytes} bytes; send smaller batches`);
      }
      throw new HttpError(400, "body is not valid gzip");
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "body is not UTF-8");
  }
}

async function readLimited(request: Request, limit: number, tooLarge: HttpError): Promise<Buffer> {
  if (request.body === null) return Buffer.alloc(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      // stop reading: what is left is the platform's to discard
      await reader.cancel().catch(() => undefined);
      throw tooLarge;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}

/** Parse the body as a JSON object, or 400. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, "body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
