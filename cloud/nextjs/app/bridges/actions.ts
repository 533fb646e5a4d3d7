"use server";
// The fleet page's two writes: claim a bridge by its code, save a bridge's
// next config version. Server actions: Next.js refuses them unless the
// request's Origin is the page's own host (CSRF), and each one checks the
// fleet page's sign-in itself, as the pages do. Outcomes travel back in the
// redirect's query string, so the forms work without any client code.

import { createHash } from "node:crypto";
import { redirect } from "next/navigation";
import { bridgeConfig, claimBridge, documentFromForm, FormProblem, saveConfig } from "../../lib/fleet/adoption";
import { requireRole } from "../../lib/fleet/guard";

const CODE_ALPHABET = /^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{8}$/;

function text(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

export async function claimAction(form: FormData): Promise<void> {
  const { email: user, source } = await requireRole("installer", "claim bridges");
  const code = text(form, "code").toUpperCase().replace(/[\s-]/g, "");
  const back = (query: Record<string, string>) => `/bridges?${new URLSearchParams(query).toString()}#claim`;
  if (!CODE_ALPHABET.test(code)) {
    redirect(back({ claim_error: "code: 8 characters as the bridge shows them, e.g. K7QM-3XPD" }));
  }
  const answer = await claimBridge(
    createHash("sha256").update(code, "utf8").digest("hex"),
    text(form, "label"),
    text(form, "timezone"),
    text(form, "id"),
    `fleet page (${user})`,
    source,
  );
  if (!answer.ok || !answer.bridge_id) redirect(back({ claim_error: answer.error ?? "claim refused" }));
  redirect(back({ claimed: answer.bridge_id }));
}

export async function saveConfigAction(form: FormData): Promise<void> {
  const { email: user, source } = await requireRole("installer", "edit bridges' config");
  const bridgeId = text(form, "bridge");
  const page = `/bridges/${encodeURIComponent(bridgeId)}`;
  let outcome: Record<string, string>;
  try {
    const current = await bridgeConfig(bridgeId);
    const based = text(form, "based_on");
    if (based !== String(current.desired?.version ?? 0)) {
      throw new FormProblem(
        `someone saved version ${current.desired?.version ?? 0} while you edited version ${based || 0}; reload and edit again`,
      );
    }
    const version = await saveConfig(bridgeId, documentFromForm(form, current.desired?.document ?? null), `fleet page (${user})`, source);
    outcome = { saved: String(version) };
  } catch (err) {
    const message =
      err instanceof FormProblem
        ? err.message
        : err instanceof Error && "code" in err && (err as { code?: string }).code === "22023"
          ? err.message
          : "could not save: the database did not answer; try again";
    if (!(err instanceof FormProblem) && message.startsWith("could not")) console.error("fleet page: config save failed:", err instanceof Error ? err.message : err);
    outcome = { config_error: message };
  }
  redirect(`${page}?${new URLSearchParams(outcome).toString()}#config`);
}
