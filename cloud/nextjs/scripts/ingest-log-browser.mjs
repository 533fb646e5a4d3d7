// Looks at a bridge's "Data received" on its fleet page in a real browser
// (Debian's chromium, driven by playwright-core), sets the ingest log's
// retention with the admin form, then replays that form's server action by
// hand past the sign-in proxy (to "/", which the proxy does not guard), once
// without and once with credentials, so the test can see that the action
// itself checks the role on the server. Prints JSON for
// tests/test_ingest_log_app.py to judge.
//
//   BASE_URL=.. FLEET_USER=.. FLEET_PASSWORD=.. BRIDGE=<id> node scripts/ingest-log-browser.mjs

import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const user = process.env.FLEET_USER;
const password = process.env.FLEET_PASSWORD;
const shots = process.env.SCREENSHOT_DIR;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };
try {
  const context = await browser.newContext({
    httpCredentials: { username: user, password },
    viewport: { width: 1200, height: 900 },
  });
  const page = await context.newPage();
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

  // the same action, asking for 7 days, posted by hand where the proxy does not look
  seen.actionCaptured = action !== null;
  if (action) {
    const body = action.body.replace(/(name="[^"]*keep_days"\r\n\r\n)30\r\n/, "$17\r\n");
    seen.bodyEdited = body !== action.body;
    const forged = {
      "content-type": action.headers["content-type"],
      "next-action": action.headers["next-action"],
      accept: "text/x-component",
      origin: base,
    };
    const anonymous = await fetch(`${base}/`, { method: "POST", headers: forged, body, redirect: "manual" });
    seen.anonymousStatus = anonymous.status;
    await page.reload({ waitUntil: "networkidle" });
    seen.keepDaysAfterAnonymous = await page.getAttribute("#data-received", "data-keep-days");
    const basic = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    const signedIn = await fetch(`${base}/`, {
      method: "POST",
      headers: { ...forged, authorization: basic },
      body,
      redirect: "manual",
    });
    seen.signedInStatus = signedIn.status;
    await page.reload({ waitUntil: "networkidle" });
    seen.keepDaysAfterSignedIn = await page.getAttribute("#data-received", "data-keep-days");
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
