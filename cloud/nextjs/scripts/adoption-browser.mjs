// Claims a bridge and edits its config on the fleet page in a real browser
// (Debian's chromium, driven by playwright-core), and prints what a person
// saw, as JSON, for tests/test_fleet_adoption_browser.py to judge.
//
//   BASE_URL=.. EMAIL=.. PASSWORD=.. CODE=K7QM-3XPD CAMERA_PASSWORD=.. node scripts/adoption-browser.mjs
// (EMAIL/PASSWORD: an installer's sign-in, see scripts/sign-in.mjs)

import { chromium } from "playwright-core";
import { signIn } from "./sign-in.mjs";

const base = process.env.BASE_URL;
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
  await page.goto(`${base}/bridges`, { waitUntil: "networkidle" });
  seen.pendingText = await page.textContent("#pending");

  // a mistyped code first: the form says so and nothing is claimed
  await page.fill("#claim-form input[name=code]", "2222-2222");
  await page.fill("#claim-form input[name=label]", "Lisbon Chiado");
  await page.fill("#claim-form input[name=timezone]", "Europe/Lisbon");
  await page.click("#claim-form button[type=submit]");
  await page.waitForSelector("[data-claim-error]", { timeout: 30000 });
  seen.claimError = await page.textContent("[data-claim-error]");

  await page.fill("#claim-form input[name=code]", process.env.CODE.toLowerCase());
  await page.fill("#claim-form input[name=label]", "Lisbon Chiado");
  await page.fill("#claim-form input[name=timezone]", "Europe/Lisbon");
  await page.click("#claim-form button[type=submit]");
  await page.waitForSelector("[data-claimed]", { timeout: 30000 });
  seen.claimed = await page.getAttribute("[data-claimed]", "data-claimed");
  if (shots) await page.screenshot({ path: `${shots}/claim.png` });

  await page.goto(`${base}/bridges/${encodeURIComponent(seen.claimed)}`, { waitUntil: "networkidle" });
  await page.fill("input[name='sensor.0.id']", "entrance-1");
  await page.fill("input[name='sensor.0.url']", "http://127.0.0.1:9");
  await page.fill("input[name='sensor.0.username']", "admin");
  await page.fill("input[name='sensor.0.password']", process.env.CAMERA_PASSWORD);
  await page.fill("input[name='sensor.0.zone']", "Europe/Lisbon");
  await page.click("#config-form button[type=submit]");
  await page.waitForSelector("[data-saved]", { timeout: 30000 });
  seen.firstSave = await page.getAttribute("[data-saved]", "data-saved");
  seen.passwordFieldAfterSave = await page.inputValue("input[name='sensor.0.password']");
  seen.passwordPlaceholder = await page.getAttribute("input[name='sensor.0.password']", "placeholder");

  // change the address only: the password stays as stored
  await page.fill("input[name='sensor.0.url']", "http://127.0.0.1:10");
  await page.fill("input[name='update.window']", "Sun 03:00-05:00");
  await page.click("#config-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("[data-saved]")?.getAttribute("data-saved") === "2", null, {
    timeout: 30000,
  });
  seen.secondSave = await page.getAttribute("[data-saved]", "data-saved");

  // a bad window is refused with a message naming it
  await page.fill("input[name='update.window']", "sometime");
  await page.click("#config-form button[type=submit]");
  await page.waitForSelector("[data-config-error]", { timeout: 30000 });
  seen.configError = await page.textContent("[data-config-error]");
  seen.html = await page.content();
  if (shots) await page.screenshot({ path: `${shots}/config.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
