// The fleet page's side of a scan of the store's network: asking a bridge for
// one, reading its newest result, and turning ticked devices into sensors of
// the bridge's next config version (docs/discovery.md, "A scan asked from the
// fleet page"). A sensor added from a scan names its camera by `serial` (else
// `mac`) beside `url`, so the bridge's identity check never polls another
// device that takes the address later.

import { pool } from "../bridge/db";
import { FormProblem, type ConfigDocument } from "./adoption";

export type ScanDevice = Record<string, unknown>;

export interface ScanView {
  /** the newest scan asked for this bridge */
  request: { id: number; requested_by: string; requested_at: Date } | null;
  /** the newest result the bridge sent */
  result: { scan_id: number; devices: ScanDevice[]; looked: Record<string, unknown>; error: string | null; received_at: Date } | null;
}

export async function bridgeScan(bridgeId: string): Promise<ScanView> {
  const db = pool();
  const [request, result] = await Promise.all([
    db.query(
      `select id::int as id, requested_by, requested_at from public.bridge_scan_requests
        where bridge_id = $1 order by id desc limit 1`,
      [bridgeId],
    ),
    db.query(
      `select scan_id::int as scan_id, devices, looked, error, received_at
         from public.bridge_scan_results where bridge_id = $1`,
      [bridgeId],
    ),
  ]);
  return { request: request.rows[0] ?? null, result: result.rows[0] ?? null };
}

/** Ask the bridge for a scan; returns its id. */
export async function requestScan(bridgeId: string, requestedBy: string): Promise<number> {
  const { rows } = await pool().query<{ id: string }>("select public.request_bridge_scan($1, $2) as id", [
    bridgeId,
    requestedBy,
  ]);
  return Number(rows[0]?.id ?? 0);
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** A device's key in the page's form: its identity, else its address (a scan lists each once). */
export function deviceKey(d: ScanDevice): string {
  return text(d.identity) || `address:${text(d.address)}`;
}

/** How the camera is named beside its url: its serial, else its MAC (never the address alone). */
export function deviceIdentity(d: ScanDevice): { serial?: string; mac?: string } {
  if (text(d.serial)) return { serial: text(d.serial) };
  if (text(d.mac)) return { mac: text(d.mac) };
  return {};
}

function hostOf(url: unknown): string {
  try {
    return new URL(text(url)).hostname;
  } catch {
    return "";
  }
}

/** The sensor of `sensors` that is this device already (same serial or MAC, else same address), or null. */
export function sensorForDevice(sensors: Record<string, unknown>[], d: ScanDevice): Record<string, unknown> | null {
  const { serial, mac } = deviceIdentity(d);
  const addresses = Array.isArray(d.addresses) ? d.addresses.map(text) : [text(d.address)];
  return (
    sensors.find(
      (s) =>
        (serial !== undefined && text(s.serial) === serial) ||
        (mac !== undefined && text(s.mac).toLowerCase() === mac.toLowerCase()) ||
        addresses.includes(hostOf(s.url)),
    ) ?? null
  );
}

export interface Pick {
  device: ScanDevice;
  id: string;
  username: string;
  password: string;
}

const SENSOR_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const ADDRESS = /^[0-9.]{7,15}$/;

/** The next config document: `current` with one new camera sensor per pick, or a FormProblem naming the row. */
export function documentWithPicks(current: ConfigDocument | null, picks: Pick[]): ConfigDocument {
  if (picks.length === 0) throw new FormProblem("tick at least one camera to add");
  const before = current ?? {};
  const sensors = Array.isArray(before.sensors)
    ? before.sensors.filter((s): s is Record<string, unknown> => typeof s === "object" && s !== null)
    : [];
  const ids = new Set(sensors.map((s) => text(s.id)));
  const added: Record<string, unknown>[] = [];
  for (const { device, id, username, password } of picks) {
    const address = text(device.address);
    const where = `camera ${address}`;
    if (device.milesight !== true) throw new FormProblem(`${where}: only a Milesight camera can be added from a scan`);
    if (!ADDRESS.test(address)) throw new FormProblem(`${where}: the scan gave no IPv4 address to poll`);
    if (sensorForDevice([...sensors, ...added], device)) throw new FormProblem(`${where}: already in the config`);
    if (!SENSOR_ID.test(id)) throw new FormProblem(`${where}: sensor id must be 1 to 64 letters, digits, ".", "_", ":" or "-"`);
    if (ids.has(id)) throw new FormProblem(`${where}: sensor id ${id} is already used`);
    if (username === "") throw new FormProblem(`${where}: enter the camera's user`);
    if (password === "") throw new FormProblem(`${where}: enter the camera's password`);
    ids.add(id);
    added.push({
      id,
      type: "milesight-camera",
      url: `http://${address}`,
      ...deviceIdentity(device),
      username,
      password,
      collect: ["line_counts"],
    });
  }
  return { ...before, sensors: [...sensors, ...added] };
}
