// The text a store manager reads: which store, what is wrong, since when (in
// the store's own time zone when the cloud knows it, else UTC), what to try
// (the matching `sensor-bridge doctor` line), and, on recovery, how long the
// outage lasted. All incidents of one cron run make one message.
//
// A camera, a device or a bridge chose some of this text (an HTTP reason
// phrase becomes a sensor's last_error, then an incident's detail; labels and
// ids come from the config): each such value is cut to printable text of
// bounded length, and its "@" and "](" are broken by an invisible space so
// it can never be an @channel/@everyone mention or a Markdown link in
// Mattermost or Discord. The channel then quotes the whole text for its own
// rules (alert-channels.ts: Slack's &, <, > escapes).

import type { AlertThresholds } from "./alert-settings";

/** One row of bridge_alert_pending(): an incident that opened or closed. */
export interface AlertEvent {
  incident_id: string;
  event: "opened" | "closed";
  channel: string;
  what: string;
  bridge_id: string;
  label: string;
  timezone: string | null;
  sensor_id: string;
  opened_at: Date;
  closed_at: Date | null;
  detail: string;
}

interface Wording {
  problem: (t: AlertThresholds) => string;
  recovered: string;
  tryThis: string;
}

const WORDING: Record<string, Wording> = {
  bridge_silent: {
    problem: (t) => `Bridge silent: no heartbeat for over ${t.bridgeMinutes} min`,
    recovered: "heartbeats again",
    tryThis:
      "is the store's internet up and the bridge powered (LED lit)? On the bridge, `sensor-bridge doctor`, " +
      "line \"cloud API reachable\": check the store's internet connection, DNS and firewall; readings wait in the outbox.",
  },
  bridge_error: {
    problem: () => "Bridge reports an error",
    recovered: "no longer in error",
    tryThis: "on the bridge run `sensor-bridge doctor`; each FAIL line says what to fix (the LED blinks fast meanwhile).",
  },
  sensor_failing: {
    problem: (t) => `Camera not answering for over ${t.sensorMinutes} min`,
    recovered: "answering again",
    tryThis:
      "`sensor-bridge doctor`, line \"sensor <id> reachable\": check the camera's power and cable, " +
      "its IP in the config, and the VLAN.",
  },
  sensor_silent: {
    problem: (t) => `No new counts for over ${t.sensorHours} h`,
    recovered: "counts arriving again",
    tryThis:
      "`sensor-bridge doctor`, line \"sensor <id> credentials and sample read\": open the camera's web page; " +
      "restart it if it is unresponsive.",
  },
  readings_dropped: {
    problem: () => "Readings dropped: the bridge's outbox was full",
    recovered: "no readings dropped for an hour",
    tryThis:
      "`sensor-bridge doctor`, line \"nothing dropped\": the uplink was down too long for outbox.max_mb; " +
      "raise it or fix the uplink.",
  },
};

function wording(what: string): Wording {
  return WORDING[what] ?? { problem: () => what, recovered: "cleared", tryThis: "run `sensor-bridge doctor` on the bridge." };
}

/** "22 Jul 14:02 WEST"-style local time of the bridge, or UTC when its zone is unknown. */
export function localTime(at: Date, timezone: string | null): string {
  const options: Intl.DateTimeFormatOptions = {
    day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short",
  };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: timezone ?? "UTC" }).format(at);
  } catch {
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: "UTC" }).format(at);
  }
}

/** 125 s -> "2 min", 7500 s -> "2 h 05 min", 3 days -> "3 d 0 h". */
export function duration(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const MAX_DETAIL_CHARS = 300;
const MAX_NAME_CHARS = 100;
const ZWSP = "\u200b";

/** Printable text on one line of at most `max` characters (controls, bidi overrides, breaks gone). */
export function printable(value: string, max: number): string {
  const flat = value
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, " ")
    .replace(/\s+/g, " ")
    .trim();
  const chars = Array.from(flat);
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : flat;
}

/** Text someone outside chose, made safe to show in a chat: printable, bounded, no mention, no link. */
export function outsideText(value: string, max: number): string {
  return printable(value, max).replaceAll("@", `@${ZWSP}`).replaceAll("](", `]${ZWSP}(`);
}

function subject(e: AlertEvent): string {
  const id = outsideText(e.bridge_id, MAX_NAME_CHARS);
  const bridge = e.label ? `${outsideText(e.label, MAX_NAME_CHARS)} (${id})` : id;
  return e.sensor_id ? `sensor ${outsideText(e.sensor_id, MAX_NAME_CHARS)} at ${bridge}` : bridge;
}

function problemLine(e: AlertEvent): string {
  const detail =
    e.detail && e.what !== "bridge_silent" && e.what !== "sensor_silent"
      ? `: ${outsideText(e.detail, MAX_DETAIL_CHARS)}`
      : "";
  return `• ${subject(e)}, since ${localTime(e.opened_at, e.timezone)}${detail}`;
}

function recoveryLine(e: AlertEvent, now: Date): string {
  const end = e.closed_at ?? now;
  return (
    `• ${subject(e)}: ${wording(e.what).recovered} after ${duration(end.getTime() - e.opened_at.getTime())} ` +
    `(${localTime(e.opened_at, e.timezone)} to ${localTime(end, e.timezone)})`
  );
}

function groupBy(events: AlertEvent[]): Map<string, AlertEvent[]> {
  const groups = new Map<string, AlertEvent[]>();
  for (const e of events) groups.set(e.what, [...(groups.get(e.what) ?? []), e]);
  return groups;
}

/** One message for all the events a channel has to hear about in this run. */
export function alertText(events: AlertEvent[], thresholds: AlertThresholds, now: Date = new Date()): string {
  const opened = events.filter((e) => e.event === "opened");
  const closed = events.filter((e) => e.event === "closed");
  const head = [
    opened.length ? `${opened.length} new problem${opened.length === 1 ? "" : "s"}` : "",
    closed.length ? `${closed.length} recovered` : "",
  ].filter(Boolean);
  const lines = [`${opened.length ? "🔴" : "✅"} sensor-bridge: ${head.join(", ")}`];
  for (const [what, group] of groupBy(opened)) {
    const words = wording(what);
    lines.push("", `${words.problem(thresholds)} (${group.length}):`, ...group.map(problemLine));
    const sensor =
      group.length === 1 && group[0]?.sensor_id ? outsideText(group[0].sensor_id, MAX_NAME_CHARS) : "<id>";
    lines.push(`Try: ${words.tryThis.replace("<id>", sensor)}`);
  }
  if (closed.length) {
    lines.push("", "✅ Recovered:", ...closed.map((e) => recoveryLine(e, now)));
  }
  return lines.join("\n");
}

/** The structured part of a webhook message, next to its text. */
export function alertFields(events: AlertEvent[], now: Date = new Date()): Record<string, unknown>[] {
  return events.map((e) => ({
    event: e.event,
    what: e.what,
    bridge_id: e.bridge_id,
    bridge_label: e.label,
    sensor_id: e.sensor_id || null,
    since: e.opened_at.toISOString(),
    closed_at: e.closed_at?.toISOString() ?? null,
    duration_s: Math.round(((e.closed_at ?? now).getTime() - e.opened_at.getTime()) / 1000),
    detail: printable(e.detail ?? "", MAX_DETAIL_CHARS),
  }));
}
