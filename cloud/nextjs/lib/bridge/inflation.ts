// A per-instance bound on gzip bodies being inflated at once.
//
// Each request is bounded (BRIDGE_MAX_JSON_BYTES after gunzip), but ten of
// them at once are ten times that, and a Node process does not give the
// memory back soon: one instance went from 110 MB to 715 MB and stayed
// there. So only so many compressed bodies are handled at a time; the
// excess is answered 503 with Retry-After at once (the appliance waits and
// sends again) instead of queueing in memory.

import { totalmem } from "node:os";
import { HttpError } from "./http";
import { envWholeNumber, type BridgeSettings } from "./settings";

/** What one inflated body costs while its request runs: the bytes, the text and the parsed object. */
const COPIES_PER_BODY = 3;
/** The share of the instance's memory that inflated bodies may take. */
const MEMORY_SHARE = 0.25;
/** Seconds the appliance waits before sending a refused batch again. */
const BUSY_RETRY_AFTER_S = 5;

let inflating = 0;

function instanceMemory(): number {
  const limit = typeof process.constrainedMemory === "function" ? Number(process.constrainedMemory()) : 0;
  const total = totalmem();
  return limit > 0 && limit < total ? limit : total;
}

/** How many compressed bodies this instance handles at once (BRIDGE_MAX_INFLATING, else from memory). */
export function inflationSlots(settings: Pick<BridgeSettings, "maxJsonBytes">): number {
  const configured = envWholeNumber("BRIDGE_MAX_INFLATING", 0);
  if (configured > 0) return configured;
  const perBody = Math.max(1, settings.maxJsonBytes) * COPIES_PER_BODY;
  return Math.max(1, Math.floor((instanceMemory() * MEMORY_SHARE) / perBody));
}

function compressed(request: Request): boolean {
  const encoding = (request.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  return encoding !== "identity" && encoding !== "";
}

/**
 * Run `work` holding one inflation slot when the body is compressed; when
 * every slot is taken, a 503 with Retry-After instead, before reading a byte.
 */
export async function withInflationSlot<T>(
  request: Request,
  settings: Pick<BridgeSettings, "maxJsonBytes">,
  work: () => Promise<T>,
): Promise<T> {
  if (!compressed(request)) return work();
  if (inflating >= inflationSlots(settings)) {
    throw new HttpError(503, "server busy inflating other batches, try later", {
      "retry-after": String(BUSY_RETRY_AFTER_S),
    });
  }
  inflating += 1;
  try {
    return await work();
  } finally {
    inflating -= 1;
  }
}
