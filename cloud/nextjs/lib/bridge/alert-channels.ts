// Sending one alert message to one channel: Telegram's Bot API sendMessage,
// or a generic incoming webhook (Slack, Mattermost, Discord's /slack URL)
// that takes JSON {"text": ...}. Each send is one attempt with a short time
// limit; the caller records the outcome so a failed send is tried again on
// the next cron run. Errors never include the bot token or the webhook URL
// (both are secrets that would end up in logs).
//
// Quoting for where the text goes (camera-chosen parts are already printable
// and bounded, alert-message.ts):
// - Slack and Mattermost read `<!channel>`, `<url|label>` and `&...;` in a
//   webhook's text as control sequences: `&`, `<`, `>` are escaped as their
//   formatting rules say (Mattermost follows Slack's). Discord's /slack URL
//   takes the same text; `allowed_mentions: {parse: []}` stops any ping.
//   The text is bounded (Mattermost keeps at most 16383 characters a post).
// - Telegram is sent without parse_mode: plain text, nothing in it is markup,
//   so nothing is escaped (escapes would show as typed).

import type { AlertChannel, TelegramChannel, WebhookChannel } from "./alert-settings";

const SEND_TIMEOUT_MS = 10_000;
// Telegram refuses messages over 4096 characters; a very long list is sent
// as several messages, split between lines.
const TELEGRAM_MAX_CHARS = 4000;
const WEBHOOK_MAX_CHARS = 15_000;

/** Slack's (and Mattermost's) escaping of a message text: only &, < and > are control characters. */
export function slackEscape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** At most `max` characters, cut between lines when it is longer, saying how much was left out. */
export function bounded(text: string, max: number): string {
  if (text.length <= max) return text;
  const [first] = splitMessage(text, max - 40);
  const left = text.split("\n").length - (first ?? "").split("\n").length;
  return `${first ?? ""}\n… (${left} more line${left === 1 ? "" : "s"})`;
}

export type SendOutcome = { ok: true } | { ok: false; error: string; retryAfterS?: number };

/** The message in pieces of at most `max` characters, split between lines. */
export function splitMessage(text: string, max: number = TELEGRAM_MAX_CHARS): string[] {
  const pieces: string[] = [];
  let current = "";
  for (const line of text.split("\n")) {
    const cut = line.length > max ? line.slice(0, max - 1) + "…" : line;
    if (current && current.length + 1 + cut.length > max) {
      pieces.push(current);
      current = cut;
    } else {
      current = current ? `${current}\n${cut}` : cut;
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "sensor-bridge-alerts/1" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
    redirect: "error",
  });
}

function failure(err: unknown): SendOutcome {
  // fetch's own errors name the cause (ECONNREFUSED, timeout) but not the URL
  const cause = (err as { cause?: { code?: string } })?.cause?.code;
  const name = err instanceof Error ? err.name : "error";
  return { ok: false, error: cause ? `${name} (${cause})` : name };
}

async function sendTelegram(channel: TelegramChannel, text: string): Promise<SendOutcome> {
  const url = `${channel.api}/bot${channel.botToken}/sendMessage`;
  for (const piece of splitMessage(text)) {
    let answer: Response;
    try {
      answer = await post(url, { chat_id: channel.chatId, text: piece, disable_web_page_preview: true });
    } catch (err) {
      return failure(err);
    }
    if (answer.ok) {
      await answer.body?.cancel();
      continue;
    }
    const reply = (await answer.json().catch(() => ({}))) as {
      description?: unknown;
      parameters?: { retry_after?: unknown };
    };
    const retryAfter = Number(reply.parameters?.retry_after ?? answer.headers.get("retry-after") ?? NaN);
    const description = typeof reply.description === "string" ? `: ${reply.description.slice(0, 200)}` : "";
    return {
      ok: false,
      error: `Telegram answered HTTP ${answer.status}${description}`,
      ...(answer.status === 429 && Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterS: retryAfter } : {}),
    };
  }
  return { ok: true };
}

async function sendWebhook(channel: WebhookChannel, text: string, fields: unknown[]): Promise<SendOutcome> {
  let answer: Response;
  try {
    answer = await post(channel.url, {
      text: bounded(slackEscape(text), WEBHOOK_MAX_CHARS),
      incidents: fields,
      allowed_mentions: { parse: [] },
    });
  } catch (err) {
    return failure(err);
  }
  await answer.body?.cancel();
  if (answer.ok) return { ok: true };
  const retryAfter = Number(answer.headers.get("retry-after") ?? NaN);
  return {
    ok: false,
    error: `webhook answered HTTP ${answer.status}`,
    ...(answer.status === 429 && Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterS: retryAfter } : {}),
  };
}

export async function sendAlert(channel: AlertChannel, text: string, fields: unknown[]): Promise<SendOutcome> {
  return channel.kind === "telegram" ? sendTelegram(channel, text) : sendWebhook(channel, text, fields);
}
