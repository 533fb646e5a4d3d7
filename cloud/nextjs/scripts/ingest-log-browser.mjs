// Looks at a bridge's "Data received" on its fleet page in a real browser
// (Debian's chromium, driven by playwright-core), sets the ingest log's
// retention with the admin form, then replays that form's server action by
// hand by a viewer (a forged request). Prints JSON for
// tests/test_ingest_log_app.py to judge.
//
//   BASE_URL=.. EMAIL=.. PASSWORD=.. FLEET_USER=.. FLEET_PASSWORD=.. BRIDGE=<id> node scripts/ingest-log-browser.mjs

import { chromium } from "playwright-core";
import { signIn } from "./sign-in.mjs";

const base = process.env.BASE_URL;
// basic auth: the fleet's read-only view (a viewer), used below to forge the admin's action
const viewerUser = process.env.FLEET_USER;
const viewerPassword = process.env.FLEET_PASSWORD;
const shots = process.env.SCREENSHOT_DIR;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await signIn(context, base, process.env.EMAIL, process.env.PASSWORD);
  page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  let action = null;
  page.on("request", (r) => {
    const headers = r.headers();
    if (r.method() === "POST" && headers["next-action"]) action = { headers, body: r.postData() };
  });
  await page.goto(`${base}/bridges/${encodeURIComponent(process.env.BRIDGE)}`, { waitUntil: "networkidle" });
  seen.heading = await page.textContent("#data-received h2");
  seen.rows = await page.$$eval("#ingest-log tbody tr", (rows) =>
    rows.map((r) => ({
      kind: r.getAttribute("data-log-kind"),
      batch: r.getAttribute("data-batch"),
      new: Number(r.getAttribute("data-new")),
      newer: Number(r.getAttribute("data-newer")),
      unchanged: Number(r.getAttribute("data-unchanged")),
      refused: Number(r.getAttribute("data-refused")),
      text: r.textContent,
    })),
  );
  if (shots) await page.locator("#data-received").screenshot({ path: `${shots}/ingest-log.png` });

  await page.fill("#ingest-log-keep input[name=keep_days]", "30");
  await page.click("#ingest-log-keep button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#data-received")?.getAttribute("data-keep-days") === "30", null, {
    timeout: 30000,
  });
  seen.keepText = await page.textContent("#data-received");
  seen.keepDays = await page.getAttribute("#data-received", "data-keep-days");

  // past the browser's own min/max: the action refuses 0 days, naming the range
  await page.evaluate(() => {
    const input = document.querySelector("#ingest-log-keep input[name=keep_days]");
    input.removeAttribute("min");
    input.value = "0";
  });
  await page.click("#ingest-log-keep button[type=submit]");
  await page.waitForSelector("[data-keep-error]", { timeout: 30000 });
  seen.keepError = await page.textContent("[data-keep-error]");
  seen.keepDaysAfterError = await page.getAttribute("#data-received", "data-keep-days");

  // the same action, asking for 7 days, replayed by hand by a viewer (basic auth's read-only view)
  seen.actionCaptured = action !== null;
  if (action) {
    const body = action.body.replace(/(name="[^"]*keep_days"\r\n\r\n)\d+\r\n/, "$17\r\n");
    seen.bodyEdited = body !== action.body;
    const viewer = `Basic ${Buffer.from(`${viewerUser}:${viewerPassword}`).toString("base64")}`;
    const forged = await fetch(page.url(), {
      method: "POST",
      headers: {
        "content-type": action.headers["content-type"],
        "next-action": action.headers["next-action"],
        accept: "text/x-component",
        origin: base,
        authorization: viewer,
      },
      body,
      redirect: "manual",
    });
    seen.forgedStatus = forged.status;
    // a client-side action's redirect travels in its answer: a 303 Location, or x-action-redirect on a 200
    seen.forgedLocation = forged.headers.get("location") ?? forged.headers.get("x-action-redirect") ?? "";
    await page.reload({ waitUntil: "networkidle" });
    seen.keepDaysAfterForged = await page.getAttribute("#data-received", "data-keep-days");
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
