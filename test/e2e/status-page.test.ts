// The status page (SPEC §4 `GET /`) driven in headless Chromium (Debian package `chromium`,
// through playwright-core): it loads behind admin Basic auth, shows the configured routes and
// their traffic, shows an upstream turning unhealthy within two refreshes of its ejection by
// the health checks, and its drain button (behind a confirmation dialog) drains the proxy.
// A screenshot is saved under test/artifacts/ (git-ignored).
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { RouteSeries, WINDOW } from "../../src/admin/stats.ts";

// The callbacks given to page.evaluate/waitForFunction run in the browser; the project's
// TypeScript config has no DOM library, so this module declares the one global they use.
declare const document: any;

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dir, "..", "artifacts");
const AUTH = { username: "ops", password: "correct horse battery" };

let healthFailing = false;
const flaky = startUpstream((req) => {
  if (new URL(req.url).pathname === "/healthz") return new Response(healthFailing ? "sick\n" : "ok\n", { status: healthFailing ? 500 : 200 });
  return new Response("flaky\n");
});
const steady = startUpstream((req) => new Response(new URL(req.url).pathname === "/healthz" ? "ok\n" : "steady\n"));
const slow = startUpstream(async (req) => {
  if (new URL(req.url).pathname !== "/healthz") await Bun.sleep(60);
  return new Response("slow\n");
});
const broken = startUpstream((req) => (new URL(req.url).pathname === "/healthz" ? new Response("ok\n") : new Response("boom\n", { status: 500 })));

const configDir = mkdtempSync(join(tmpdir(), "hecate-status-config-"));
const configPath = join(configDir, "hecate.yaml");
const config = {
  admin: { auth: { basic: AUTH } },
  proxy: {
    health: { intervalSec: 0.5, timeoutSec: 1, failThreshold: 1, successReset: 1, path: "/healthz" },
    routes: [
      { name: "api", hosts: ["api.test", "*.api.test"], pathPrefix: "/api", upstreams: [flaky.url, steady.url] },
      { name: "limited", hosts: ["limited.test"], upstreams: [steady.url], policy: { rateLimit: { rps: 0.01, burst: 1 } } },
      { name: "boom", hosts: ["boom.test"], upstreams: [broken.url] },
      { name: "slow", hosts: ["slow.test"], upstreams: [slow.url] },
      { name: "web", upstreams: [steady.url] },
    ],
  },
};
const h = await startHecate(config, { configPath });

const userDataDir = mkdtempSync(join(tmpdir(), "hecate-status-chromium-"));
let ctx: BrowserContext;
let page: Page;
const requested: string[] = [];
/** Console errors and uncaught exceptions of the page (CSP violations show up here too). */
const pageErrors: string[] = [];

beforeAll(async () => {
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    httpCredentials: AUTH,
    viewport: { width: 360, height: 780 },
  });
  ctx.on("request", (r) => requested.push(r.url()));
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on("console", (m) => void (m.type() === "error" && pageErrors.push(m.text())));
  page.on("pageerror", (e) => void pageErrors.push(String(e)));
}, 20_000);

afterAll(async () => {
  await ctx?.close();
  rmSync(userDataDir, { recursive: true, force: true });
  rmSync(configDir, { recursive: true, force: true });
  await h.shutdown();
  flaky.stop();
  steady.stop();
  broken.stop();
  slow.stop();
}, 20_000);

/** Number of completed refreshes of the page's data. */
const refreshes = () => page.evaluate(() => Number(document.body.dataset.refreshes));

async function until<T>(what: string, f: () => Promise<T | false | undefined> | T | false | undefined, ms = 10_000): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== false && v !== undefined) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}

test("the page needs the admin credentials", async () => {
  expect((await fetch(`${h.adminUrl}/`)).status).toBe(401);
  const ok = await fetch(`${h.adminUrl}/`, { headers: { authorization: `Basic ${btoa(`${AUTH.username}:${AUTH.password}`)}` } });
  expect(ok.status).toBe(200);
  expect(ok.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(ok.headers.get("content-security-policy")).toContain("default-src 'none'");
  const html = await ok.text();
  expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i); // no external assets
});

test("loads, shows the routes, refreshes itself and fits 360 px", async () => {
  const res = await page.goto(`${h.adminUrl}/`);
  expect(res?.status()).toBe(200);
  await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1);
  expect(await page.locator("tr[data-route]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-route")))).toEqual(["api", "limited", "boom", "slow", "web"]);
  const api = page.locator('tr[data-route="api"]');
  expect(await api.textContent()).toContain("api.test");
  expect(await api.textContent()).toContain("*.api.test");
  expect(await api.textContent()).toContain("/api");
  expect(await page.locator("caption").count()).toBeGreaterThanOrEqual(3);

  // traffic shows up in the next refreshes, without reloading the page
  for (let i = 0; i < 5; i++) expect((await fetch(`${h.url}/api/x`, { headers: { host: "api.test" } })).status).toBe(200);
  expect((await fetch(`${h.url}/x`, { headers: { host: "other.test" } })).status).toBe(200);
  await page.waitForFunction(() => document.querySelector('tr[data-route="api"] td:last-child')?.textContent?.trim().startsWith("5"), null, { timeout: 5000 });
  expect((await page.locator('tr[data-route="api"] svg[role="img"]').getAttribute("aria-label")) ?? "").toMatch(/p50 [\d.]+ m?s, p99 [\d.]+ m?s/);
  expect(await page.locator('tr[data-route="web"] td:last-child').textContent()).toMatch(/^1\b/);
  const nav = await page.evaluate(() => performance.getEntriesByType("navigation" as never).length);
  expect(nav).toBe(1); // refreshed by fetch, not by reloading

  // listeners and generation
  expect(await page.locator("#listeners").textContent()).toContain("HTTP/1.1");
  expect(await page.locator("#generation").textContent()).toBe("1");

  // narrow screens: nothing overflows the page itself (wide tables scroll inside their region)
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  // everything came from the admin listener
  expect(requested.length).toBeGreaterThan(1);
  for (const u of requested) expect(u.startsWith(`${h.adminUrl}/`)).toBe(true);
  expect(pageErrors).toEqual([]);
}, 15_000);

test("errors and rate-limit denials are counted per route, in the JSON and on the page", async () => {
  for (let i = 0; i < 3; i++) expect((await fetch(`${h.url}/`, { headers: { host: "limited.test" } })).status).toBe(i === 0 ? 200 : 429);
  for (let i = 0; i < 2; i++) expect((await fetch(`${h.url}/`, { headers: { host: "boom.test" } })).status).toBe(500);
  const auth = { authorization: `Basic ${btoa(`${AUTH.username}:${AUTH.password}`)}` };
  type Stats = { routes: { name: string; totals: { requests: number; errors: number; denied: number }; p50Ms: number | null; series: { count: number[] } }[] };
  const stats = (await (await fetch(`${h.adminUrl}/admin/stats`, { headers: auth })).json()) as Stats;
  const by = (n: string) => stats.routes.find((r) => r.name === n)!;
  expect(by("limited").totals).toEqual({ requests: 3, errors: 2, denied: 2 }); // a 429 Hecate answered is also an error
  expect(by("boom").totals).toEqual({ requests: 2, errors: 2, denied: 0 });
  expect(by("boom").series.count.reduce((a, b) => a + b, 0)).toBe(2);
  expect(by("boom").p50Ms).toBeGreaterThan(0);
  // on the page once those seconds are complete (rates are over complete seconds)
  await page.waitForFunction(() => document.querySelector('tr[data-route="limited"]')?.textContent?.includes("⚠"), null, { timeout: 5000 });
  const limited = (await page.locator('tr[data-route="limited"]').textContent()) ?? "";
  expect(limited).toContain("(2 total)");
  await page.waitForFunction(() => /✖ [\d.]+\/s \(100\.0%\)/.test(document.querySelector('tr[data-route="boom"]')?.textContent ?? ""), null, { timeout: 5000 });
}, 15_000);

test("latency quantiles: from the proxy, and the sketch's error bound and one-second ring", async () => {
  await Promise.all([0, 1, 2, 3, 4].map(() => fetch(`${h.url}/`, { headers: { host: "slow.test" } }).then((r) => r.text())));
  const auth = { authorization: `Basic ${btoa(`${AUTH.username}:${AUTH.password}`)}` };
  const stats = (await (await fetch(`${h.adminUrl}/admin/stats`, { headers: auth })).json()) as { routes: { name: string; p50Ms: number; p99Ms: number }[] };
  const s = stats.routes.find((r) => r.name === "slow")!;
  expect(s.p50Ms).toBeGreaterThan(60 / 1.2);
  expect(s.p50Ms).toBeLessThan(150);

  const r = new RouteSeries();
  const sec = 1_000_000;
  for (let ms = 1; ms <= 1000; ms++) r.record(sec, ms, false, false);
  const snap = r.snapshot(sec);
  expect(snap.p50Ms! / 500).toBeGreaterThan(1 / 1.2);
  expect(snap.p50Ms! / 500).toBeLessThan(1.2);
  expect(snap.p99Ms! / 990).toBeGreaterThan(1 / 1.2);
  expect(snap.p99Ms! / 990).toBeLessThan(1.2);
  expect(snap.series.count.at(-1)).toBe(1000);
  // the slot of `sec` is reused WINDOW seconds later: the old second is gone, totals stay
  r.record(sec + WINDOW, 5, true, true);
  const later = r.snapshot(sec + WINDOW);
  expect(later.windowRequests).toBe(1);
  expect(later.series.count.at(-1)).toBe(1);
  expect(later.series.errors.at(-1)).toBe(1);
  expect(later.totals).toEqual({ requests: 1001, errors: 1, denied: 1 });
  expect(later.p50Ms! / 5).toBeGreaterThan(1 / 1.2);
  expect(later.p50Ms! / 5).toBeLessThan(1.2);
});

test("an upstream ejected by the health checks shows as unhealthy within two refreshes", async () => {
  const row = `tr[data-upstream="${flaky.url}"]`;
  await page.waitForSelector(`${row} td[data-health="healthy"]`, { timeout: 5000 });
  healthFailing = true;
  const state = h.rt.registry.byUrl.get(flaky.url)!;
  await until("the health checks to eject the upstream", () => !state.healthy);
  const before = await refreshes();
  const shownAt = await page.waitForFunction(
    (sel) => (document.querySelector(sel)?.getAttribute("data-health") === "unhealthy" ? Number(document.body.dataset.refreshes) : false),
    `${row} td[data-health]`,
    { timeout: 5000 }, // polled per animation frame: the count read is the one of the render that showed it
  );
  expect(Number(await shownAt.jsonValue()) - before).toBeLessThanOrEqual(2);
  const text = (await page.locator(row).textContent()) ?? "";
  expect(text).toContain("unhealthy"); // a word, not only a colour
  expect(text).toContain("ejected");
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "status-page-360.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: join(ARTIFACTS, "status-page.png"), fullPage: true });
  await page.setViewportSize({ width: 360, height: 780 });
  healthFailing = false;
  await until("the upstream to be restored", () => state.healthy);
  await page.waitForSelector(`${row} td[data-health="healthy"]`, { timeout: 5000 });
  expect(await page.locator(row).textContent()).toContain("restored");
}, 25_000);

test("the drain button asks first, then drains the proxy; resume undoes it (keyboard only)", async () => {
  const btn = page.locator("#drain-btn");
  await page.waitForFunction(() => !document.getElementById("drain-btn").disabled);
  expect(await btn.textContent()).toBe("Drain…");

  // Escape cancels the dialog: nothing changes
  await btn.focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#drain-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#drain-dialog:not([open])", { state: "attached" });
  expect(h.rt.draining).toBe(false);
  expect((await fetch(`${h.url}/x`)).status).toBe(200);

  // confirm: Enter on the button, Tab from Cancel (focused first) to Drain, Enter
  await btn.focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#drain-dialog[open]");
  expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Cancel");
  await page.keyboard.press("Tab");
  expect(await page.evaluate(() => document.activeElement?.id)).toBe("dlg-confirm");
  await page.keyboard.press("Enter");
  const drained = await until("the public listener to answer 503", async () => {
    const r = await fetch(`${h.url}/x`);
    return r.status === 503 ? r : false;
  });
  expect(await drained.text()).toBe("server is draining\n");
  expect(h.rt.draining).toBe(true);
  await page.waitForFunction(() => document.getElementById("drain-state")?.textContent?.includes("Draining"), null, { timeout: 5000 });
  expect(await btn.textContent()).toBe("Resume traffic…");

  await btn.focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#drain-dialog[open]");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await until("the public listener to serve again", async () => (await fetch(`${h.url}/x`)).status === 200);
  await page.waitForFunction(() => document.getElementById("drain-state")?.textContent?.includes("Serving"), null, { timeout: 5000 });
}, 25_000);

test("the explain form answers in the page", async () => {
  await page.fill("#ex-host", "v1.api.test");
  await page.fill("#ex-path", "/api/users");
  await page.click("#ex-submit");
  await page.waitForSelector("#explain-out table");
  const out = (await page.locator("#explain-out").textContent()) ?? "";
  expect(out).toContain("Route: api");
  expect(out).toContain(steady.url);
  expect(out).toMatch(/web.*shadowed by "api": wildcard host \*\.api\.test beats any-host/);
  expect(pageErrors).toEqual([]);
}, 10_000);

test("reloads show up: a failed one keeps the generation, a good one moves it", async () => {
  const auth = { authorization: `Basic ${btoa(`${AUTH.username}:${AUTH.password}`)}` };
  await Bun.write(configPath, "proxy:\n  routes:\n    - name: broken\n      pathPrefx: /x\n");
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST", headers: auth })).status).toBe(400);
  await page.waitForFunction(() => document.getElementById("reload")?.textContent?.includes("failed"), null, { timeout: 5000 });
  expect(await page.locator("#reload").textContent()).toMatch(/failed, \d+ errors?; old config kept/);
  expect(await page.locator("#generation").textContent()).toBe("1");

  // the same config as YAML (JSON is YAML) with the listeners it runs on, plus one route
  const next = structuredClone(config) as any;
  next.admin.listen = "127.0.0.1:0";
  next.proxy.listen = "127.0.0.1:0";
  next.telemetry = { accessLog: false, logLevel: "warn" };
  next.proxy.routes.push({ name: "added", hosts: ["added.test"], upstreams: [steady.url] });
  await Bun.write(configPath, JSON.stringify(next));
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST", headers: auth })).status).toBe(200);
  await page.waitForFunction(() => document.getElementById("generation")?.textContent === "2", null, { timeout: 5000 });
  expect(await page.locator("#reload").textContent()).toContain("succeeded");
  await page.waitForSelector('tr[data-route="added"]', { timeout: 5000 });
  expect(await page.locator('tr[data-route="api"] td:last-child').textContent()).toMatch(/^5\b/); // a route keeps its numbers over a reload
  expect(pageErrors).toEqual([]);
}, 15_000);
