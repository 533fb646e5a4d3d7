// A bridge's state on the fleet page: one word and its colour, from its
// last heartbeat and how long ago that was.

export type Tone = "green" | "amber" | "red" | "grey";

export interface BridgeState {
  word: string;
  tone: Tone;
}

export function bridgeState(
  heartbeatState: string | null,
  ageSeconds: number | null,
  retired: boolean,
  silentAfterMinutes: number,
): BridgeState {
  if (retired) return { word: "retired", tone: "grey" };
  if (ageSeconds === null) return { word: "never heard from", tone: "grey" };
  if (ageSeconds > silentAfterMinutes * 60) return { word: "silent", tone: "red" };
  if (heartbeatState === "error") return { word: "error", tone: "red" };
  if (heartbeatState === "ok") return { word: "ok", tone: "green" };
  return { word: heartbeatState ?? "unknown", tone: "amber" };
}

export function sensorTone(state: string | null): Tone {
  if (state === "ok") return "green";
  if (state === "error" || state === "failing" || state === "unreachable") return "red";
  return state === null ? "grey" : "amber";
}

/** "42 s", "11 min", "3 h 5 min", "2 d 4 h": how long ago, to a person's precision. */
export function age(seconds: number | null): string {
  if (seconds === null) return "never";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

export function utc(moment: Date | null): string {
  return moment === null ? "—" : `${moment.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
