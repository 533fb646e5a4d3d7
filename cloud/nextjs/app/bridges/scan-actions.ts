"use server";
// The fleet page's scan actions: ask a bridge to scan the store's network, and
// add ticked cameras from its result to the bridge's next config version.
// Each checks the person's role on the server first (installer), as every
// action does; outcomes travel back in the redirect's query string.

import { redirect } from "next/navigation";
import { bridgeConfig, FormProblem, saveConfig } from "../../lib/fleet/adoption";
import { requireRole } from "../../lib/fleet/guard";
import { bridgeScan, deviceKey, documentWithPicks, requestScan, type Pick } from "../../lib/fleet/scan";

function field(form: FormData, name: string): string {
  const value = form.get(name);
  return typeof value === "string" ? value.trim() : "";
}

function back(bridgeId: string, outcome: Record<string, string>): string {
  return `/bridges/${encodeURIComponent(bridgeId)}?${new URLSearchParams(outcome).toString()}#scan`;
}

function problem(err: unknown, what: string): string {
  if (err instanceof FormProblem) return err.message;
  if (err instanceof Error && "code" in err && (err as { code?: string }).code === "22023") return err.message;
  console.error(`fleet page: ${what} failed:`, err instanceof Error ? err.message : err);
  return `could not ${what}: the database did not answer; try again`;
}

export async function startScanAction(form: FormData): Promise<void> {
  const { email } = await requireRole("installer");
  const bridgeId = field(form, "bridge");
  let outcome: Record<string, string>;
  try {
    if ((await bridgeConfig(bridgeId)).reported?.config_source === "local") {
      throw new FormProblem("this bridge is managed on site and takes no scan from this page; run `sensor-bridge discover` on it");
    }
    outcome = { scan_asked: String(await requestScan(bridgeId, `fleet page (${email})`)) };
  } catch (err) {
    outcome = { scan_error: problem(err, "ask for a scan") };
  }
  redirect(back(bridgeId, outcome));
}

export async function addScannedAction(form: FormData): Promise<void> {
  const { email } = await requireRole("installer");
  const bridgeId = field(form, "bridge");
  let outcome: Record<string, string>;
  try {
    const [scan, config] = await Promise.all([bridgeScan(bridgeId), bridgeConfig(bridgeId)]);
    const result = scan.result;
    if (result === null || String(result.scan_id) !== field(form, "scan_id")) {
      throw new FormProblem("a newer scan arrived while you ticked; look at its devices and tick again");
    }
    // Devices come from the stored result, never from the form: the form names them by key only.
    const byKey = new Map(result.devices.map((d) => [deviceKey(d), d]));
    const picks: Pick[] = [];
    for (let i = 0; form.has(`key.${i}`); i++) {
      if (form.get(`pick.${i}`) !== "on") continue;
      const device = byKey.get(field(form, `key.${i}`));
      if (!device) throw new FormProblem("a ticked camera is not in the scan's result; reload the page");
      const password = form.get(`password.${i}`);
      picks.push({
        device,
        id: field(form, `id.${i}`),
        username: field(form, `user.${i}`),
        password: typeof password === "string" ? password : "",
      });
    }
    const next = documentWithPicks(config.desired?.document ?? null, picks);
    outcome = { scan_added: String(await saveConfig(bridgeId, next, `fleet page (${email})`)) };
  } catch (err) {
    outcome = { scan_error: problem(err, "add the cameras") };
  }
  redirect(back(bridgeId, outcome));
}
