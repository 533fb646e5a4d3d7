"use server";
// The bridge page's admin actions: retire a bridge, rotate its key. Only an
// admin may (requireRole("admin") first, on the server: a forged request from
// anyone else ends there); Next.js refuses a server action whose Origin is not
// the page's host. Both go through the database functions that write the audit
// log with the person and their address. The rotated key travels back once, in
// the action's answer, never in a URL.

import { revalidatePath } from "next/cache";
import { retireBridge, rotateBridgeKey } from "../../lib/fleet/audit";
import { requireRole } from "../../lib/fleet/guard";

export type AdminOutcome = { done?: string; error?: string; key?: string };

function text(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

function failed(what: string, err: unknown): AdminOutcome {
  console.error(`fleet page: ${what} failed:`, err instanceof Error ? err.message : err);
  return { error: `could not ${what}: the database did not answer; try again` };
}

export async function retireAction(_before: AdminOutcome, form: FormData): Promise<AdminOutcome> {
  const { email, source } = await requireRole("admin");
  const bridgeId = text(form, "bridge");
  if (text(form, "confirm") !== bridgeId) return { error: "retire: confirm with the bridge's id" };
  let answer;
  try {
    answer = await retireBridge(bridgeId, email, source);
  } catch (err) {
    return failed("retire", err);
  }
  if (!answer.ok) return { error: `retire: ${answer.error}` };
  revalidatePath(`/bridges/${encodeURIComponent(bridgeId)}`);
  return {
    done: answer.already
      ? `${bridgeId} was already retired`
      : `${bridgeId} retired: its key is refused and it raises no alerts; its readings stay. Rotate its key to bring it back.`,
  };
}

export async function rotateAction(_before: AdminOutcome, form: FormData): Promise<AdminOutcome> {
  const { email, source } = await requireRole("admin");
  const bridgeId = text(form, "bridge");
  if (text(form, "confirm") !== bridgeId) return { error: "rotate: confirm with the bridge's id" };
  let key;
  try {
    key = await rotateBridgeKey(bridgeId, email, source);
  } catch (err) {
    return failed("rotate the key", err);
  }
  if (key === null) return { error: `rotate: no bridge '${bridgeId}'` };
  revalidatePath(`/bridges/${encodeURIComponent(bridgeId)}`);
  return { done: `${bridgeId} has a new key; the old one stopped working.`, key };
}
