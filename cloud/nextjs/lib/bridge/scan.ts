// POST /api/bridge/v1/scan: an adopted bridge reports the scan of the store's
// network the fleet page asked for (docs/ingest-contract.md, "A scan of the
// store's network"), and the lookup the config and heartbeat answers use to
// name a scan still waiting.
//
// The document is checked here so a bad one gets a 400 naming the key; the
// devices are stored as the bridge sent them and rendered only as text.

import type { Pool } from "pg";
import { errorResponse, HttpError, json } from "./http";
import { acceptBridgeRequest } from "./request";
import { bridgeSettings, type BridgeSettings } from "./settings";

export const SCAN_REPORT_SCHEMA = "sensor-bridge/scan-report/v1";
export const DISCOVERY_SCHEMA = "sensor-bridge/discovery/v1";
export const MAX_SCAN_DEVICES = 256;
export const MAX_SCAN_BYTES = 256 * 1024;

/** The scan id the bridge should run and report, or null (bridge_scan_wanted in the scans migration). */
export async function scanWanted(db: Pool, bridgeId: string): Promise<number | null> {
  const { rows } = await db.query<{ id: string | null }>("select public.bridge_scan_wanted($1) as id", [bridgeId]);
  const id = rows[0]?.id;
  return id === null || id === undefined ? null : Number(id);
}

export interface ScanReport {
  scanId: number;
  devices: unknown[];
  looked: Record<string, unknown>;
  error: string | null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The report's parts, or an HttpError 400 naming what is wrong. */
export function checkScanReport(body: Record<string, unknown>): ScanReport {
  const bad = (message: string) => new HttpError(400, message);
  if (body.schema !== SCAN_REPORT_SCHEMA) throw bad(`schema: must be "${SCAN_REPORT_SCHEMA}"`);
  const scanId = body.scan_id;
  if (typeof scanId !== "number" || !Number.isSafeInteger(scanId) || scanId < 1) {
    throw bad("scan_id: must be a whole number >= 1");
  }
  const { scan, error } = body;
  if ((scan === null || scan === undefined) === (error === null || error === undefined)) {
    throw bad("scan, error: exactly one of them must be given (the document, or why the scan failed)");
  }
  if (scan === null || scan === undefined) {
    if (typeof error !== "string" || error === "" || error.length > 500) {
      throw bad("error: must be text of 1 to 500 characters");
    }
    return { scanId, devices: [], looked: {}, error };
  }
  if (!isObject(scan)) throw bad("scan: must be sensor-bridge discover's JSON document (an object)");
  if (scan.schema !== DISCOVERY_SCHEMA) throw bad(`scan.schema: must be "${DISCOVERY_SCHEMA}"`);
  const devices = scan.devices;
  if (!Array.isArray(devices)) throw bad("scan.devices: must be a list");
  if (devices.length > MAX_SCAN_DEVICES) throw bad(`scan.devices: at most ${MAX_SCAN_DEVICES} devices`);
  devices.forEach((d, i) => {
    if (!isObject(d)) throw bad(`scan.devices[${i}]: must be an object`);
    if (typeof d.address !== "string" || d.address === "" || d.address.length > 64) {
      throw bad(`scan.devices[${i}].address: must be text of 1 to 64 characters`);
    }
  });
  const { devices: _devices, ...looked } = scan;
  return { scanId, devices, looked, error: null };
}

export async function handleScanReport(request: Request): Promise<Response> {
  let settings: Pick<BridgeSettings, "retryAfterS"> = { retryAfterS: 30 };
  try {
    const full = { ...bridgeSettings(), maxBodyBytes: MAX_SCAN_BYTES, maxJsonBytes: MAX_SCAN_BYTES };
    settings = full;
    const { bridgeId, body, db } = await acceptBridgeRequest(request, full);
    const report = checkScanReport(body);
    await db.query("select public.record_bridge_scan($1, $2, $3::jsonb, $4::jsonb, $5)", [
      bridgeId,
      report.scanId,
      JSON.stringify(report.devices),
      JSON.stringify(report.looked),
      report.error,
    ]);
    return json(200, { ok: true, scan_id: report.scanId, devices: report.devices.length });
  } catch (err) {
    return errorResponse(err, settings);
  }
}
