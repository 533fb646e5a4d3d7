// Alert settings from the environment: thresholds and the channels to tell.
//
// Read on each run like the other settings, so a changed variable takes
// effect on the next cron run. A half-configured channel (a bot token
// without a chat id) is a ConfigError naming the missing variable: an alert
// path that silently does nothing is worse than none.

import { ConfigError } from "./settings";

export interface AlertThresholds {
  /** a bridge without a heartbeat this long is silent */
  bridgeMinutes: number;
  /** a camera failing this long is reported */
  sensorMinutes: number;
  /** a sensor without a new final period this long is reported */
  sensorHours: number;
}

export interface TelegramChannel {
  kind: "telegram";
  api: string;
  botToken: string;
  chatId: string;
}

export interface WebhookChannel {
  kind: "webhook";
  url: string;
}

export type AlertChannel = TelegramChannel | WebhookChannel;

function envPositive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new ConfigError(`${name} must be a number > 0, not ${JSON.stringify(raw)}`);
  }
  return value;
}

export function alertThresholds(): AlertThresholds {
  return {
    bridgeMinutes: envPositive("ALERT_BRIDGE_MINUTES", 10),
    sensorMinutes: envPositive("ALERT_SENSOR_MINUTES", 30),
    sensorHours: envPositive("ALERT_SENSOR_HOURS", 3),
  };
}

function httpUrl(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(`${name} must be an http(s) URL`);
  }
  return raw;
}

/** The channels configured in the environment, by name ("telegram", "webhook"). */
export function alertChannels(env: NodeJS.ProcessEnv = process.env): Map<string, AlertChannel> {
  const channels = new Map<string, AlertChannel>();
  const token = env.ALERT_TELEGRAM_BOT_TOKEN?.trim() ?? "";
  const chat = env.ALERT_TELEGRAM_CHAT_ID?.trim() ?? "";
  if (token !== "" || chat !== "") {
    if (token === "") throw new ConfigError("ALERT_TELEGRAM_CHAT_ID is set but ALERT_TELEGRAM_BOT_TOKEN is not");
    if (chat === "") throw new ConfigError("ALERT_TELEGRAM_BOT_TOKEN is set but ALERT_TELEGRAM_CHAT_ID is not");
    const api = httpUrl("ALERT_TELEGRAM_API", env.ALERT_TELEGRAM_API?.trim() || "https://api.telegram.org").replace(/\/+$/, "");
    channels.set("telegram", { kind: "telegram", api, botToken: token, chatId: chat });
  }
  const webhook = env.ALERT_WEBHOOK_URL?.trim() ?? "";
  if (webhook !== "") channels.set("webhook", { kind: "webhook", url: httpUrl("ALERT_WEBHOOK_URL", webhook) });
  return channels;
}
