// Asks a bridge for a scan of the store's network on its fleet page, waits
// for the bridge's report to show, and adds a ticked camera with its user and
// password, in a real browser (Debian's chromium, driven by playwright-core).
// Prints what a person saw, as JSON, for tests/test_fleet_scan_browser.py.
//
//   BASE_URL=.. EMAIL=.. PASSWORD=.. BRIDGE=.. CAMERA=<address> OTHER=<address>
//   CAMERA_PASSWORD=.. node scripts/scan-browser.mjs

import { chromium } from "playwright-core";
import { signIn } from "./sign-in.mjs";

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR;
const camera = process.env.CAMERA;
const other = process.env.OTHER;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await signIn(context, base, process.env.EMAIL, process.env.PASSWORD);
  page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  const bridgePage = `${base}/bridges/${encodeURIComponent(process.env.BRIDGE)}`;
  await page.goto(bridgePage, { waitUntil: "networkidle" });
  seen.stateBefore = await page.getAttribute("#scan", "data-scan-state");

  await page.click("#scan-start");
  await page.waitForSelector("[data-scan-asked]", { timeout: 30000 });
  seen.asked = await page.getAttribute("[data-scan-asked]", "data-scan-asked");
  seen.stateAsked = await page.getAttribute("#scan", "data-scan-state");
  seen.statusAsked = await page.textContent("[data-scan-status]");

  // The bridge reports when it next asks the cloud: a person reloads until the devices show.
  const deadline = Date.now() + 120000;
  for (;;) {
    await page.goto(bridgePage, { waitUntil: "networkidle" });
    if ((await page.getAttribute("#scan", "data-scan-state")) === "done") break;
    if (Date.now() > deadline) throw new Error("the scan's devices never appeared on the page");
    await page.waitForTimeout(1000);
  }
  seen.statusDone = await page.textContent("[data-scan-status]");
  seen.rows = await page.$$eval("#scan-devices tbody tr", (rows) =>
    rows.map((r) => ({
      address: r.getAttribute("data-device"),
      milesight: r.getAttribute("data-milesight"),
      text: r.textContent,
      tick: r.querySelector("input[type=checkbox]") !== null,
    })),
  );
  seen.injected = await page.$$eval("#scan-devices img, #scan-devices script", (n) => n.length);
  if (shots) await page.screenshot({ path: `${shots}/scan.png`, fullPage: true });

  // ticked without a password: refused, naming the camera; nothing saved
  const row = (address) => `#scan-devices tr[data-device='${address}']`;
  await page.check(`${row(other)} input[type=checkbox]`);
  await page.fill(`${row(other)} input[name^='id.']`, "side-door");
  await page.click("#scan-add");
  await page.waitForSelector("[data-scan-error]", { timeout: 30000 });
  seen.noPasswordError = await page.textContent("[data-scan-error]");

  await page.check(`${row(camera)} input[type=checkbox]`);
  await page.fill(`${row(camera)} input[name^='id.']`, "entrance-1");
  await page.fill(`${row(camera)} input[name^='user.']`, "admin");
  await page.fill(`${row(camera)} input[name^='password.']`, process.env.CAMERA_PASSWORD);
  await page.click("#scan-add");
  await page.waitForSelector("[data-scan-added]", { timeout: 30000 });
  seen.added = await page.getAttribute("[data-scan-added]", "data-scan-added");
  seen.inConfig = await page.getAttribute(`${row(camera)} [data-in-config]`, "data-in-config");
  seen.desired = await page.textContent("[data-desired]");
  seen.html = await page.content();
  if (shots) await page.screenshot({ path: `${shots}/scan-added.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
