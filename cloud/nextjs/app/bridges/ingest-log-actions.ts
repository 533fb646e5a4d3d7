"use server";
// The ingest log's one write: how many days it is kept, for the whole fleet.
// Admins only, checked here on the server (a viewer's forged post ends at
// requireRole); the outcome travels back in the redirect's query string.

import { redirect } from "next/navigation";
import { setRetention } from "../../lib/fleet/ingest-log";
import { requireRole } from "../../lib/fleet/guard";

export async function setIngestLogKeepAction(form: FormData): Promise<void> {
  const { email, source } = await requireRole("admin");
  const bridge = form.get("bridge");
  const days = String(form.get("keep_days") ?? "").trim();
  const page = typeof bridge === "string" && bridge !== "" ? `/bridges/${encodeURIComponent(bridge)}` : "/bridges";
  const back = (query: Record<string, string>) => `${page}?${new URLSearchParams(query).toString()}#data-received`;
  if (!/^\d{1,4}$/.test(days) || Number(days) < 1 || Number(days) > 3650) {
    redirect(back({ log_keep_error: `keep_days: a whole number of days from 1 to 3650 (got "${days.slice(0, 20)}")` }));
  }
  try {
    await setRetention(Number(days), email, source);
  } catch (err) {
    console.error("fleet page: ingest log retention not saved:", err instanceof Error ? err.message : err);
    redirect(back({ log_keep_error: "could not save: the database did not answer; try again" }));
  }
  redirect(back({ log_kept: days }));
}
