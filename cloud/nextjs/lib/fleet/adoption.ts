// The fleet page's side of adoption: bridges waiting to be claimed, a
// bridge's desired and reported config, and turning the config editor's form
// into the next config document (docs/ingest-contract.md, "Config from the cloud").
//
// Camera passwords and the alert ping URL are write-only: they are read from
// the database only to carry them into the next version when the form's
// field is left blank, and never reach a rendered page.

import { pool } from "../bridge/db";

export interface PendingBridge {
  serial: string;
  lan_address: string;
  version: string;
  hostname: string;
  first_seen: Date;
  last_seen: Date;
  reflashed_from: string | null;
}

export async function pendingBridges(): Promise<PendingBridge[]> {
  const { rows } = await pool().query<PendingBridge>(
    `select serial, lan_address, version, hostname, first_seen, last_seen, reflashed_from
       from public.bridge_enrollments
      where claimed_at is null and expires_at >= now()
      order by first_seen desc limit 200`,
  );
  return rows;
}

export type ConfigDocument = Record<string, unknown>;

export interface ConfigView {
  desired: { version: number; made_by: string; made_at: Date; document: ConfigDocument } | null;
  reported: {
    config_source: string | null;
    tried_version: number | null;
    running_version: number | null;
    status: string | null;
    error: string | null;
    reported_at: Date;
  } | null;
  refused: { version: number; refused: string; refused_error: string | null }[];
}

/** What the cloud wants a bridge to run and what it said it runs. Holds secrets: never render `document` as is. */
export async function bridgeConfig(bridgeId: string): Promise<ConfigView> {
  const db = pool();
  const [desired, reported, refused] = await Promise.all([
    db.query("select version, made_by, made_at, document from public.bridge_desired_config($1)", [bridgeId]),
    db.query(
      `select config_source, tried_version, running_version, status, error, reported_at
         from public.bridge_config_state where bridge_id = $1`,
      [bridgeId],
    ),
    db.query(
      `select version, refused, refused_error from public.bridge_config_versions
        where bridge_id = $1 and refused is not null order by version desc limit 5`,
      [bridgeId],
    ),
  ]);
  return { desired: desired.rows[0] ?? null, reported: reported.rows[0] ?? null, refused: refused.rows };
}

export const KINDS = ["line_counts", "region_counts", "live_counts"] as const;
const WINDOW = /^((Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$/;
const SENSOR_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export class FormProblem extends Error {}

function field(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

function rowIndexes(form: FormData, prefix: string): number[] {
  const seen = new Set<number>();
  for (const key of form.keys()) {
    const match = new RegExp(`^${prefix}\\.(\\d{1,3})\\.`).exec(key);
    if (match?.[1]) seen.add(Number(match[1]));
  }
  return [...seen].sort((a, b) => a - b);
}

function asList(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === "object" && v !== null) : [];
}

function asTable(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
}

/**
 * The next config document from the editor's form and the current one.
 * Keys the form does not show (a sensor's interval_s, the broker's password...)
 * are carried over; a blank password or ping URL keeps the stored one.
 */
export function documentFromForm(form: FormData, current: ConfigDocument | null): ConfigDocument {
  const before = current ?? {};
  const oldSensors = new Map(asList(before.sensors).map((s) => [String(s.id), s]));
  const sensors: Record<string, unknown>[] = [];
  const ids = new Set<string>();
  for (const i of rowIndexes(form, "sensor")) {
    const at = (name: string) => field(form, `sensor.${i}.${name}`);
    const was = at("was");
    if (form.get(`sensor.${i}.remove`) === "on") continue;
    const id = at("id");
    const url = at("url");
    if (id === "" && url === "" && was === "") continue; // an empty new row
    const where = `sensor ${id || `row ${i + 1}`}`;
    if (!SENSOR_ID.test(id)) throw new FormProblem(`${where}: id must be 1 to 64 letters, digits, ".", "_", ":" or "-"`);
    if (ids.has(id)) throw new FormProblem(`${where}: id is used twice`);
    ids.add(id);
    if (!/^https?:\/\/[^\s/]+\/?$/.test(url)) {
      throw new FormProblem(`${where}: url must be http:// or https:// and the camera's address, e.g. http://camera-1.local`);
    }
    const sensor: Record<string, unknown> = { ...(oldSensors.get(was) ?? {}), id, type: at("type") || "milesight-camera", url };
    const username = at("username");
    if (username) sensor.username = username;
    else delete sensor.username;
    const password = form.get(`sensor.${i}.password`);
    if (typeof password === "string" && password !== "") sensor.password = password;
    const zone = at("zone");
    if (zone) sensor.timezone = zone;
    else delete sensor.timezone;
    const kinds = KINDS.filter((k) => form.get(`sensor.${i}.kind.${k}`) === "on");
    if (kinds.length === 0) throw new FormProblem(`${where}: choose at least one kind to collect`);
    sensor.collect = kinds;
    sensors.push(sensor);
  }

  const mqtt = asTable(before.mqtt);
  const devices: Record<string, unknown>[] = [];
  for (const i of rowIndexes(form, "device")) {
    const at = (name: string) => field(form, `device.${i}.${name}`);
    if (form.get(`device.${i}.remove`) === "on") continue;
    const row = { sensor_id: at("sensor_id"), serial: at("serial"), topic: at("topic"), dev_eui: at("dev_eui"), model: at("model") };
    if (Object.values(row).every((v) => v === "")) continue;
    if (!SENSOR_ID.test(row.sensor_id)) throw new FormProblem(`MQTT device row ${i + 1}: sensor_id is required (letters, digits, ".", "_", ":", "-")`);
    if (row.dev_eui && !/^[0-9A-Fa-f]{16}$/.test(row.dev_eui)) throw new FormProblem(`MQTT device ${row.sensor_id}: dev_eui must be 16 hex digits`);
    devices.push(Object.fromEntries(Object.entries(row).filter(([, v]) => v !== "")));
  }
  if (devices.length) mqtt.devices = devices;
  else delete mqtt.devices;

  const alerts = asTable(before.alerts);
  const ping = field(form, "alerts.ping_url");
  if (form.get("alerts.ping_url.remove") === "on") delete alerts.ping_url;
  else if (ping !== "") {
    if (!/^https?:\/\/\S+$/.test(ping)) throw new FormProblem("alert ping URL: must start with https:// (or http://)");
    alerts.ping_url = ping;
  }

  const update = asTable(before.update);
  const updateWindow = field(form, "update.window");
  if (updateWindow === "") delete update.window;
  else if (!WINDOW.test(updateWindow)) throw new FormProblem('update window: like "Sun 03:00-05:00" or "03:00-05:00" (every day)');
  else update.window = updateWindow;

  const next: ConfigDocument = { ...before, sensors };
  for (const [name, table] of [["mqtt", mqtt], ["alerts", alerts], ["update", update]] as const) {
    if (Object.keys(table).length) next[name] = table;
    else delete next[name];
  }
  return next;
}

/**
 * Save `document` as the bridge's next version; the database refuses a bridge
 * managed on site, and records which keys changed in the audit log (by `madeBy`, from `source`).
 */
export async function saveConfig(bridgeId: string, document: ConfigDocument, madeBy: string, source = ""): Promise<number> {
  const { rows } = await pool().query<{ version: number }>(
    "select public.set_bridge_config($1, $2::jsonb, $3, $4) as version",
    [bridgeId, JSON.stringify(document), madeBy, source],
  );
  return rows[0]?.version ?? 0;
}

export interface ClaimAnswer {
  ok: boolean;
  bridge_id?: string;
  error?: string;
}

export async function claimBridge(
  codeSha256: string,
  label: string,
  timezone: string,
  id: string,
  who: string,
  source: string,
): Promise<ClaimAnswer> {
  const { rows } = await pool().query<{ answer: ClaimAnswer }>(
    "select public.claim_bridge($1, $2, $3, $4, $5, $6) as answer",
    [codeSha256, label, timezone, id, who, source],
  );
  return rows[0]?.answer ?? { ok: false, error: "no answer from the database" };
}
