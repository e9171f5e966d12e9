// The dashboard in a real browser: Debian's chromium (never a downloaded one),
// driven by playwright-core, against the web process the calling spec started
// (spec/e2e/admin_browser_spec.lua). Each check prints one JSON line
// {"name", "ok", "error"}; the exit status is 0 only if every check passed.
// Input, from the environment: BASE_URL, ADMIN_SECRET, FIXTURE (JSON: the org
// ids and the dead job's jid the spec seeded), SCREENSHOTS (a directory),
// CHROMIUM (default /usr/bin/chromium).
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const BASE = process.env.BASE_URL;
const SECRET = process.env.ADMIN_SECRET;
const FIX = JSON.parse(process.env.FIXTURE || "{}");
const SHOTS = process.env.SCREENSHOTS;
const AXE = require.resolve("axe-core/axe.min.js");
let failures = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(JSON.stringify({ name, ok: true }));
  } catch (err) {
    failures++;
    console.log(JSON.stringify({ name, ok: false, error: String(err && err.message || err).slice(0, 2000) }));
  }
}

function expect(cond, what) { if (!cond) throw new Error(what); }

async function text(page, selector) { return (await page.locator(selector).first().innerText()).trim(); }

// axe-core in its own context (CSP bypassed only there, to inject axe), with
// the signed-in cookies: serious or critical violations fail the check.
async function accessible(browser, state, url) {
  const ctx = await browser.newContext({ bypassCSP: true, storageState: state });
  try {
    const page = await ctx.newPage();
    await page.goto(BASE + url);
    await page.addScriptTag({ path: AXE });
    const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
    const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    expect(bad.length === 0, bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("; "));
  } finally {
    await ctx.close();
  }
}

async function signIn(page, secret) {
  await page.goto(BASE + "/admin");
  expect(page.url().endsWith("/admin/signin"), "not sent to the sign-in page: " + page.url());
  await page.getByLabel("Operator secret").fill(secret);
  return Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Sign in" }).click()]);
}

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  let state;

  await check("a wrong secret is refused", async () => {
    const [res] = await signIn(page, SECRET + "-wrong");
    expect(res.status() === 401, "status " + res.status());
    expect((await text(page, "[role=alert]")) === "That is not the operator secret.", "no refusal shown");
    expect((await ctx.cookies()).every((c) => c.name !== "mc_admin"), "a session cookie was set");
  });

  await check("signs in with the operator secret", async () => {
    await signIn(page, SECRET);
    expect((await text(page, "h1")) === "Overview", "not on the overview");
    const cookie = (await ctx.cookies()).find((c) => c.name === "mc_admin");
    expect(cookie && cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/admin", "cookie " + JSON.stringify(cookie));
    expect(!(await page.content()).includes(SECRET), "the secret is on the page");
    state = await ctx.storageState();
  });

  await check("the overview refreshes itself", async () => {
    await page.waitForFunction(() => /^Live: updated/.test(document.getElementById("live-status").textContent));
    expect(/jobs\/s|measuring/.test(await text(page, "#job-rate")), "no throughput shown");
    expect((await page.locator("svg[data-chart=active] rect").count()) === 24, "the hourly chart has no 24 bars");
    await page.screenshot({ path: path.join(SHOTS, "overview.png") });
  });

  await check("shows tenants in several states", async () => {
    await page.goto(BASE + "/admin/tenants");
    const states = await page.locator("table.tenants .state").allInnerTexts();
    for (const s of ["failed", "active", "awaiting_app_oauth", "received"]) expect(states.includes(s), "no " + s + " in " + states);
  });

  await check("filters by state and searches by name", async () => {
    await page.getByLabel("State").selectOption("failed");
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Filter" }).click()]);
    const states = await page.locator("table.tenants .state").allInnerTexts();
    expect(states.length === 1 && states[0] === "failed", "rows: " + states);
    await page.getByLabel("State").selectOption("");
    await page.getByLabel("Name or org id").fill(FIX.retry_name);
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Filter" }).click()]);
    const names = await page.locator("table.tenants tbody td:first-child").allInnerTexts();
    expect(names.length === 1 && names[0] === FIX.retry_name, "rows: " + names);
  });

  await check("opens a tenant, with its history", async () => {
    await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: FIX.retry_name }).click()]);
    expect((await text(page, "h1")) === FIX.retry_name, "heading " + (await text(page, "h1")));
    expect((await text(page, "#org-state")) === "received", "state " + (await text(page, "#org-state")));
    expect((await page.locator("table.history tbody tr").count()) >= 1, "no history");
    await page.screenshot({ path: path.join(SHOTS, "tenant.png"), fullPage: false });
  });

  await check("an action without its CSRF token is refused", async () => {
    await page.evaluate(() => document.querySelectorAll("form input[name=csrf]").forEach((i) => i.remove()));
    const [res] = await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Retry step" }).click()]);
    expect(res.status() === 403, "status " + res.status());
    expect((await text(page, "h1")) === "Refused", "heading " + (await text(page, "h1")));
  });

  await check("retry step moves the tenant on", async () => {
    await page.goto(BASE + "/admin/tenants/" + FIX.retry_org);
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Retry step" }).click()]);
    expect(/^Retry step: done/.test(await text(page, ".flash")), "flash: " + (await text(page, ".flash")));
    const deadline = Date.now() + 30000;
    let s;
    for (;;) {
      await page.reload();
      s = await text(page, "#org-state");
      if (s !== "received" || Date.now() > deadline) break;
      await page.waitForTimeout(300);
    }
    expect(s !== "received" && s !== "failed", "still " + s);
  });

  await check("resume takes a failed tenant back to its step", async () => {
    await page.goto(BASE + "/admin/tenants/" + FIX.failed_org);
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Resume" }).click()]);
    expect(/^Resume: done, the org is now/.test(await text(page, ".flash")), "flash: " + (await text(page, ".flash")));
    expect((await text(page, "#org-state")) !== "failed", "still failed");
  });

  await check("retries a dead job and it leaves the dead set", async () => {
    await page.goto(BASE + "/admin/jobs");
    const row = page.locator(`#dead tr[data-jid="${FIX.dead_jid}"]`);
    expect((await row.count()) === 1, "the dead job is not listed");
    await Promise.all([page.waitForNavigation(), row.getByRole("button", { name: "Retry job " + FIX.dead_jid }).click()]);
    expect((await text(page, ".flash")) === `Job ${FIX.dead_jid} is queued again.`, "flash: " + (await text(page, ".flash")));
    expect((await page.locator(`#dead tr[data-jid="${FIX.dead_jid}"]`).count()) === 0, "still in the dead set");
  });

  await check("is readable on a phone-sized screen", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: state });
    const p = await phone.newPage();
    for (const url of ["/admin", "/admin/tenants", "/admin/tenants/" + FIX.retry_org, "/admin/jobs"]) {
      await p.goto(BASE + url);
      const wide = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(wide <= 0, url + " is " + wide + "px wider than the screen");
    }
    await phone.close();
  });

  for (const [name, url] of [["sign-in", "/admin/signin"], ["overview", "/admin"], ["tenants", "/admin/tenants"],
      ["tenant", "/admin/tenants/" + FIX.failed_org], ["jobs", "/admin/jobs"]]) {
    await check(`axe: no serious or critical violation on the ${name} page`, () =>
      accessible(browser, name === "sign-in" ? undefined : state, url));
  }

  await browser.close();
}

main().then(() => process.exit(failures ? 1 : 0), (err) => {
  console.log(JSON.stringify({ name: "the browser run", ok: false, error: String(err && err.stack || err) }));
  process.exit(2);
});
