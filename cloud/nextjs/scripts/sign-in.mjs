// Shared by the browser scripts: sign in on /sign-in with email + password,
// as a person would, and wait until the fleet page (or `next`) is shown.

export async function signIn(context, base, email, password, next = "/bridges") {
  const page = await context.newPage();
  await page.goto(`${base}/sign-in?${new URLSearchParams({ next })}`, { waitUntil: "networkidle" });
  await page.fill("#password-form input[name=email]", email);
  await page.fill("#password-form input[name=password]", password);
  await page.click("#password-form button[type=submit]");
  await page.waitForURL((url) => url.pathname !== "/sign-in", { timeout: 30000 });
  await page.waitForLoadState("networkidle");
  await page.waitForSelector("main", { timeout: 30000 });
  return page;
}
