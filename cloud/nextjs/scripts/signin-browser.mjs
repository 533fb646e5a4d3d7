// Sign-in and roles on the fleet page in a real browser (Debian's chromium,
// driven by playwright-core), against the Supabase Auth stand-in
// (tests/auth_standin.py). Prints what each person saw, as JSON, for
// tests/test_fleet_signin_browser.py to judge.
//
//   BASE_URL=.. AUTH_URL=.. BRIDGE=<id> CODE=.. CODE2=.. CLAIM_FIELD='$ACTION_ID_..' VIEWER=email:password INSTALLER=.. ADMIN=..
//   STRANGER=email:password INVITE=email LEAVER=email MAGIC=email node scripts/signin-browser.mjs

import { chromium } from "playwright-core";
import { signIn } from "./sign-in.mjs";

const base = process.env.BASE_URL;
const bridge = process.env.BRIDGE;
const who = (name) => process.env[name].split(":");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = { consoleErrors: [] };
const watch = (page) => {
  page.on("console", (m) => m.type() === "error" && seen.consoleErrors.push(m.text()));
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  return page;
};
// the claim form as a browser without JavaScript posts it: the action's id field (from the build) + the fields
const actionField = process.env.CLAIM_FIELD;
const claimFields = (code, label) => ({ code, label, timezone: "Europe/Lisbon", id: "" });

try {
  // signed out: sent to the sign-in page, with where they were going
  const anonymous = watch(await (await browser.newContext()).newPage());
  await anonymous.goto(`${base}/bridges/${encodeURIComponent(bridge)}`, { waitUntil: "networkidle" });
  seen.signedOut = { url: anonymous.url(), html: await anonymous.content() };

  // a wrong password is refused with a message
  await anonymous.fill("#password-form input[name=email]", who("VIEWER")[0]);
  await anonymous.fill("#password-form input[name=password]", "not-the-password");
  await anonymous.click("#password-form button[type=submit]");
  await anonymous.waitForSelector("[data-sign-in-error]", { timeout: 30000 });
  seen.wrongPassword = await anonymous.textContent("[data-sign-in-error]");

  // installer: claims a bridge and edits its sensors
  const installerContext = await browser.newContext();
  const installer = watch(await signIn(installerContext, base, ...who("INSTALLER")));
  seen.installerBar = await installer.getAttribute("[data-person]", "data-person");
  await installer.fill("#claim-form input[name=code]", process.env.CODE);
  await installer.fill("#claim-form input[name=label]", "Lisbon Chiado");
  await installer.fill("#claim-form input[name=timezone]", "Europe/Lisbon");
  await installer.click("#claim-form button[type=submit]");
  await installer.waitForSelector("[data-claimed]", { timeout: 30000 });
  seen.claimed = await installer.getAttribute("[data-claimed]", "data-claimed");
  await installer.goto(`${base}/bridges/${encodeURIComponent(seen.claimed)}`, { waitUntil: "networkidle" });
  await installer.fill("input[name='sensor.0.id']", "entrance-1");
  await installer.fill("input[name='sensor.0.url']", "http://127.0.0.1:9");
  await installer.fill("input[name='sensor.0.zone']", "Europe/Lisbon");
  await installer.click("#config-form button[type=submit]");
  await installer.waitForSelector("[data-saved]", { timeout: 30000 });
  seen.installerSaved = await installer.getAttribute("[data-saved]", "data-saved");

  // a cross-origin POST with the installer's cookies (CSRF): refused, nothing claimed
  const crossOrigin = await installerContext.request.post(`${base}/bridges`, {
    multipart: { [actionField]: "", ...claimFields(process.env.CODE2, "Cross Origin") },
    headers: { Origin: "http://attacker.invalid" },
    maxRedirects: 0,
    failOnStatusCode: false,
  });
  seen.crossOrigin = { status: crossOrigin.status(), location: crossOrigin.headers()["location"] ?? "" };

  // viewer: sees the fleet, is offered no claim or edit form
  const viewerContext = await browser.newContext();
  const viewer = watch(await signIn(viewerContext, base, ...who("VIEWER")));
  seen.viewer = {
    bar: await viewer.getAttribute("[data-person]", "data-role"),
    rows: await viewer.$$eval("tr[data-bridge]", (rows) => rows.map((r) => r.dataset.bridge)),
    claimForms: await viewer.locator("#claim-form").count(),
    noClaim: await viewer.textContent("[data-no-claim]"),
    peopleLinks: await viewer.locator("a[href='/bridges/people']").count(),
  };
  await viewer.goto(`${base}/bridges/${encodeURIComponent(bridge)}`, { waitUntil: "networkidle" });
  seen.viewer.configForms = await viewer.locator("#config-form").count();
  seen.viewer.noEdit = await viewer.textContent("[data-no-edit]");
  const people = await viewer.goto(`${base}/bridges/people`, { waitUntil: "networkidle" });
  seen.viewer.people = { url: viewer.url(), status: people.status(), text: await viewer.textContent("main") };

  // ... and a forged claim from the viewer's own session (same origin) is refused on the server
  const forged = await viewerContext.request.post(`${base}/bridges`, {
    multipart: { [actionField]: "", ...claimFields(process.env.CODE2, "Forged") },
    headers: { Origin: base },
    maxRedirects: 0,
    failOnStatusCode: false,
  });
  seen.forged = { status: forged.status(), location: forged.headers()["location"] ?? "" };
  if (seen.forged.location) {
    await viewer.goto(new URL(seen.forged.location, base).href, { waitUntil: "networkidle" });
    seen.forged.text = await viewer.textContent("[data-refused]");
  }

  // a Supabase user who is not one of the fleet's people gets nothing
  const stranger = watch(await signIn(await browser.newContext(), base, ...who("STRANGER")));
  seen.stranger = { url: stranger.url(), html: await stranger.content() };

  // admin: invites a person, changes a role, cannot demote the last admin
  const admin = watch(await signIn(await browser.newContext(), base, ...who("ADMIN")));
  await admin.click("a[href='/bridges/people']");
  await admin.waitForSelector("#invite-form", { timeout: 30000 });
  await admin.fill("#invite-form input[name=email]", process.env.INVITE);
  await admin.selectOption("#invite-form select[name=role]", "installer");
  await admin.click("#invite-form button[type=submit]");
  await admin.waitForSelector("[data-people-done]", { timeout: 30000 });
  seen.invited = await admin.textContent("[data-people-done]");
  const viewerEmail = who("VIEWER")[0];
  await admin.selectOption(`[data-role-form='${viewerEmail}'] select`, "installer");
  await admin.click(`[data-role-form='${viewerEmail}'] button[type=submit]`);
  await admin.waitForFunction((e) => document.querySelector("[data-people-done]")?.textContent?.includes(`${e} is now`), viewerEmail, {
    timeout: 30000,
  });
  seen.roleChanged = await admin.textContent("[data-people-done]");
  const adminEmail = who("ADMIN")[0].toLowerCase(); // the fleet keeps emails lower-case
  await admin.selectOption(`[data-role-form='${adminEmail}'] select`, "viewer");
  await admin.click(`[data-role-form='${adminEmail}'] button[type=submit]`);
  await admin.waitForSelector("[data-people-error]", { timeout: 30000 });
  seen.lastAdmin = await admin.textContent("[data-people-error]");
  await admin.click(`[data-remove-form='${process.env.LEAVER}'] button[type=submit]`);
  await admin.waitForFunction(() => document.querySelector("[data-people-done]")?.textContent?.includes("removed"), null, {
    timeout: 30000,
  });
  seen.removed = await admin.textContent("[data-people-done]");
  seen.ownRemoveForms = await admin.locator(`[data-remove-form='${adminEmail}']`).count();
  seen.members = await admin.$$eval("tr[data-member]", (rows) => rows.map((r) => [r.dataset.member, r.dataset.role]));

  // magic link: asked on the sign-in page, opened from the mailbox, lands where they were going
  const magicContext = await browser.newContext();
  const magic = watch(await magicContext.newPage());
  await magic.goto(`${base}/bridges/${encodeURIComponent(bridge)}`, { waitUntil: "networkidle" });
  await magic.fill("#link-form input[name=email]", process.env.MAGIC);
  await magic.click("#link-form button[type=submit]");
  await magic.waitForSelector("[data-link-sent]", { timeout: 30000 });
  const mail = await (await fetch(`${process.env.AUTH_URL}/mailbox?to=${encodeURIComponent(process.env.MAGIC)}`)).json();
  seen.magicMail = mail.length;
  await magic.goto(mail.at(-1).link, { waitUntil: "networkidle" });
  seen.magic = { url: magic.url() };
  seen.magic.person = await magic.getAttribute("[data-person]", "data-person");

  // sign-out: back to the sign-in page, and the fleet is closed again
  await magic.click("#sign-out button[type=submit]");
  await magic.waitForSelector("[data-signed-out]", { timeout: 30000 });
  seen.signedOutUrl = magic.url();
  await magic.goto(`${base}/bridges`, { waitUntil: "networkidle" });
  seen.afterSignOut = magic.url();
  seen.cookiesAfterSignOut = (await magicContext.cookies()).filter((c) => c.name.startsWith("sb-")).map((c) => c.name);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
