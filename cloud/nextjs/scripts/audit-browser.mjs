// An admin retires one bridge and rotates another's key from their pages in a
// real browser (Debian's chromium, driven by playwright-core), then reads the
// audit log on both bridges' pages and on /bridges/audit, and prints what a
// person saw, as JSON, for tests/test_fleet_audit_browser.py to judge.
//
//   BASE_URL=.. EMAIL=.. PASSWORD=.. FLEET_USER=.. FLEET_PASSWORD=.. RETIRE=<bridge id> ROTATE=<bridge id> node scripts/audit-browser.mjs

import { chromium, request as playwrightRequest } from "playwright-core";
import { signIn } from "./sign-in.mjs";

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };

async function auditRows(page) {
  return page.$$eval("[data-audit-row]", (rows) =>
    rows.map((row) => ({
      id: row.getAttribute("data-audit-row"),
      action: row.getAttribute("data-action"),
      actor: row.querySelector("[data-actor]")?.textContent ?? "",
      bridge: row.querySelector("[data-bridge-id]")?.getAttribute("data-bridge-id") ?? null,
      summary: row.querySelector("[data-summary]")?.textContent ?? "",
      summaryElements: row.querySelector("[data-summary]")?.children.length ?? -1,
      text: row.textContent,
    })),
  );
}

try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await signIn(context, base, process.env.EMAIL, process.env.PASSWORD);
  page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));

  // retire: open the box, press the button that names the bridge
  const retirePage = `${base}/bridges/${encodeURIComponent(process.env.RETIRE)}`;
  await page.goto(retirePage, { waitUntil: "networkidle" });
  seen.retireButtonHiddenFirst = !(await page.isVisible("[data-confirm-retire]"));
  await page.click("[data-retire] summary");
  await page.click("[data-confirm-retire]");
  await page.waitForSelector("[data-admin-done]", { timeout: 30000 });
  seen.retireDone = await page.textContent("[data-admin-done]");
  await page.goto(retirePage, { waitUntil: "networkidle" });
  seen.retiredBadge = await page.textContent(`[data-bridge="${process.env.RETIRE}"]`);
  seen.retireAudit = await auditRows(page);
  if (shots) await page.screenshot({ path: `${shots}/retire.png`, fullPage: true });

  // rotate: the new key is shown once
  const rotatePage = `${base}/bridges/${encodeURIComponent(process.env.ROTATE)}`;
  await page.goto(rotatePage, { waitUntil: "networkidle" });
  let rotateRequest = null;
  page.on("request", (r) => {
    if (r.method() === "POST" && r.headers()["next-action"] && rotateRequest === null) rotateRequest = r;
  });
  await page.click("[data-rotate] summary");
  await page.click("[data-confirm-rotate]");
  await page.waitForSelector("[data-new-key] code", { timeout: 30000 });
  seen.newKey = await page.textContent("[data-new-key] code");
  seen.urlAfterRotate = page.url();
  if (shots) await page.screenshot({ path: `${shots}/rotate.png`, fullPage: true });
  // the same request replayed by a viewer (basic auth's read-only view): refused on the server, nothing rotated
  const stranger = await playwrightRequest.newContext();
  const viewer = `Basic ${Buffer.from(`${process.env.FLEET_USER}:${process.env.FLEET_PASSWORD}`).toString("base64")}`;
  const forged = await stranger.post(rotateRequest.url(), {
    headers: { ...rotateRequest.headers(), authorization: viewer },
    data: rotateRequest.postDataBuffer(),
    maxRedirects: 0,
  });
  seen.forgedStatus = forged.status();
  // a client-side action's redirect travels in its answer: a 303 Location, or x-action-redirect on a 200
  seen.forgedLocation = forged.headers()["location"] ?? forged.headers()["x-action-redirect"] ?? "";
  seen.forgedGotKey = (await forged.text()).includes("sbk_");
  await stranger.dispose();

  await page.goto(rotatePage, { waitUntil: "networkidle" });
  seen.rotateAudit = await auditRows(page);
  seen.rotateHtmlAfterReload = await page.content();

  await page.goto(`${base}/bridges/audit`, { waitUntil: "networkidle" });
  seen.fleetAudit = await auditRows(page);
  if (shots) await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
