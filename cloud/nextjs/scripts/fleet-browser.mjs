// Looks at the fleet page in a real browser (Debian's chromium, driven by
// playwright-core) and prints what a person would see, as JSON, for
// tests/test_fleet_browser.py to judge. Screenshots go to SCREENSHOT_DIR if set.
//
//   BASE_URL=http://127.0.0.1:3000 FLEET_USER=.. FLEET_PASSWORD=.. BRIDGE=<id> node scripts/fleet-browser.mjs

import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };
try {
  // Without credentials the browser gets the challenge and would prompt;
  // headless, the prompt is cancelled and navigation fails on purpose.
  const anonymous = await browser.newPage();
  seen.anonymous = {};
  anonymous.on("response", (r) => {
    seen.anonymous = { status: r.status(), challenge: r.headers()["www-authenticate"] ?? null };
  });
  await anonymous.goto(`${base}/bridges`).catch((e) => {
    seen.anonymous.prompted = String(e).includes("ERR_INVALID_AUTH_CREDENTIALS");
  });

  const context = await browser.newContext({
    httpCredentials: { username: process.env.FLEET_USER, password: process.env.FLEET_PASSWORD },
    viewport: { width: 1100, height: 420 },
  });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  const fleet = await page.goto(`${base}/bridges`, { waitUntil: "networkidle" });
  seen.fleetStatus = fleet.status();
  seen.rows = await page.$$eval("tr[data-bridge]", (rows) =>
    rows.map((r) => {
      const badge = r.querySelector("[data-badge]");
      return {
        id: r.dataset.bridge,
        word: badge?.textContent ?? "",
        colour: badge ? getComputedStyle(badge).backgroundColor : "",
        age: r.querySelector("[data-age]")?.textContent ?? "",
        text: r.textContent ?? "",
      };
    }),
  );
  if (shots) await page.screenshot({ path: `${shots}/fleet.png` });

  const bridge = await page.goto(`${base}/bridges/${encodeURIComponent(process.env.BRIDGE)}`, { waitUntil: "networkidle" });
  seen.bridgeStatus = bridge.status();
  seen.charts = await page.$$eval("svg[data-hours]", (svgs) =>
    svgs.map((s) => ({
      hours: Number(s.dataset.hours),
      points: (s.querySelector("polyline")?.getAttribute("points") ?? "").trim().split(/\s+/).length,
      label: s.getAttribute("aria-label"),
    })),
  );
  seen.bridgeText = await page.textContent("main");
  if (shots) await page.screenshot({ path: `${shots}/bridge.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
