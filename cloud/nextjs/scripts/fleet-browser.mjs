// Looks at the fleet page in a real browser (Debian's chromium, driven by
// playwright-core) and prints what a person would see, as JSON, for
// tests/test_fleet_browser.py to judge. Screenshots go to SCREENSHOT_DIR if set.
//
//   BASE_URL=http://127.0.0.1:3000 EMAIL=.. PASSWORD=.. BRIDGE=<id> node scripts/fleet-browser.mjs
// (EMAIL/PASSWORD: a viewer's sign-in, see scripts/sign-in.mjs)

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
  // Signed out, the browser is sent to the sign-in page.
  const anonymous = await browser.newPage();
  const first = await anonymous.goto(`${base}/bridges`, { waitUntil: "networkidle" });
  seen.anonymous = { status: first.status(), url: anonymous.url(), text: await anonymous.textContent("main") };

  const context = await browser.newContext({ viewport: { width: 1100, height: 420 } });
  const page = await signIn(context, base, process.env.EMAIL, process.env.PASSWORD);
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
