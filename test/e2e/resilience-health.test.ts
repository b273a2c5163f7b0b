// Active health checks (SPEC §3.5): GET <base><path> every intervalSec from start, timeoutSec
// each, failThreshold failures eject, successReset successes restore; one prober per distinct
// URL, probes of one upstream never overlap, re-planned on reload, stopped on shutdown.
import { test, expect, afterEach } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { healthUpstream, statusUpstream, waitFor, type Fixture } from "../helpers/faults.ts";
import { healthCheckerOf } from "../../src/upstream/health.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
function track<T extends Fixture>(f: T): T {
  cleanup.push(() => f.stop());
  return f;
}
async function start(config: Record<string, any>, opts: { configPath?: string } = {}): Promise<Hecate> {
  const h = await startHecate(config, opts);
  cleanup.push(() => h.shutdown());
  return h;
}
const stateOf = (h: Hecate, url: string) => h.rt.registry.byUrl.get(url)!;

async function portOf(h: Hecate): Promise<number> {
  const r = await fetch(`${h.url}/x`);
  return ((await r.json()) as { port: number }).port;
}

test("ejection after failThreshold failed probes, restoration after successReset good ones", async () => {
  const a = track(healthUpstream());
  const b = track(healthUpstream());
  const h = await start({
    proxy: {
      health: { intervalSec: 0.05, timeoutSec: 1, failThreshold: 2, successReset: 2 },
      routes: [{ name: "r", upstreams: [a.url, b.url] }],
    },
  });
  const sa = stateOf(h, a.url);
  expect(sa.healthy).toBe(true); // upstreams start healthy
  a.healthStatus = 503;
  const failFrom = a.probes.length;
  await waitFor(() => !sa.healthy, 3000, "ejection");
  // the probe that ejected it was at least the 2nd failing one
  expect(a.probes.length - failFrom).toBeGreaterThanOrEqual(2);
  expect(sa.history.at(-1)!.slice(1)).toEqual(["ejected", "HTTP 503"]);
  const servedA = a.served;
  for (let i = 0; i < 6; i++) expect(await portOf(h)).toBe(b.port);
  expect(a.served).toBe(servedA);

  a.healthStatus = 200;
  const okFrom = a.probes.length;
  await waitFor(() => sa.healthy, 3000, "restoration");
  expect(a.probes.length - okFrom).toBeGreaterThanOrEqual(2);
  expect(sa.history.at(-1)![1]).toBe("restored");
  const ports = new Set<number>();
  for (let i = 0; i < 4; i++) ports.add(await portOf(h));
  expect(ports.has(a.port)).toBe(true);
  expect((await (await fetch(`${h.adminUrl}/admin/upstreams`)).json()) as any).toMatchObject({ upstreams: expect.any(Array) });
});

test("every upstream ejected → 503 no healthy upstream", async () => {
  const a = track(healthUpstream());
  a.healthStatus = 500;
  const h = await start({
    proxy: { health: { intervalSec: 0.05, failThreshold: 1 }, routes: [{ name: "r", upstreams: [a.url] }] },
  });
  await waitFor(() => !stateOf(h, a.url).healthy, 3000, "ejection");
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(503);
  expect(await r.text()).toBe("no healthy upstream\n");
  expect(a.served).toBe(0);
});

test("first probe at start; probe path is <upstream base><health.path>", async () => {
  const a = track(healthUpstream("/hc"));
  const t0 = performance.now();
  await start({
    proxy: { health: { intervalSec: 60, path: "/hc" }, routes: [{ name: "r", upstreams: [a.url + "/base/"] }] },
  });
  await waitFor(() => a.probes.length === 1, 3000, "first probe");
  expect(performance.now() - t0).toBeLessThan(2000); // not after the 60 s interval
  expect(a.probes[0]!.path).toBe("/base/hc");
});

test("each distinct upstream URL is probed once per interval, however many routes use it", async () => {
  const a = track(healthUpstream());
  const h = await start({
    proxy: {
      health: { intervalSec: 0.1 },
      routes: [
        { name: "one", pathPrefix: "/one", upstreams: [a.url] },
        { name: "two", pathPrefix: "/two", upstreams: [a.url] },
        { name: "three", upstreams: [a.url, a.url + "/other"] },
      ],
    },
  });
  expect(healthCheckerOf(h.rt)!.urls.sort()).toEqual([a.url, a.url + "/other"].sort());
  await waitFor(() => a.probes.filter((p) => p.path === "/healthz").length >= 6, 5000, "probes");
  const times = a.probes.filter((p) => p.path === "/healthz").map((p) => p.at);
  for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThan(70);
});

test("probes of one upstream never overlap: a slow probe delays the next", async () => {
  const a = track(healthUpstream());
  a.healthDelayMs = 150;
  await start({
    proxy: { health: { intervalSec: 0.02, timeoutSec: 2 }, routes: [{ name: "r", upstreams: [a.url] }] },
  });
  await waitFor(() => a.probes.length >= 4, 5000, "probes");
  expect(a.maxConcurrentProbes).toBe(1);
  for (let i = 1; i < a.probes.length; i++) expect(a.probes[i]!.at - a.probes[i - 1]!.at).toBeGreaterThanOrEqual(140);
});

test("a probe slower than timeoutSec fails", async () => {
  const a = track(healthUpstream());
  a.healthDelayMs = 400;
  const h = await start({
    proxy: { health: { intervalSec: 0.05, timeoutSec: 0.05, failThreshold: 2 }, routes: [{ name: "r", upstreams: [a.url] }] },
  });
  await waitFor(() => !stateOf(h, a.url).healthy, 5000, "ejection by timeout");
  expect(stateOf(h, a.url).history.at(-1)![2]).toBe("health check timed out");
});

test("expectStatus: only that status is healthy; without it any status below 500 is", async () => {
  const strict = track(healthUpstream());
  const loose = track(healthUpstream());
  strict.healthStatus = 404;
  loose.healthStatus = 404;
  const h1 = await start({
    proxy: { health: { intervalSec: 0.05, failThreshold: 1, expectStatus: 200 }, routes: [{ name: "r", upstreams: [strict.url] }] },
  });
  const h2 = await start({
    proxy: { health: { intervalSec: 0.05, failThreshold: 1 }, routes: [{ name: "r", upstreams: [loose.url] }] },
  });
  await waitFor(() => !stateOf(h1, strict.url).healthy, 3000, "ejection (expectStatus 200, got 404)");
  await waitFor(() => loose.probes.length >= 3, 3000, "probes");
  expect(stateOf(h2, loose.url).healthy).toBe(true);
});

test("a connection error fails the probe", async () => {
  const a = track(statusUpstream([200]));
  const h = await start({
    proxy: { health: { intervalSec: 0.05, failThreshold: 2 }, routes: [{ name: "r", upstreams: [a.url] }] },
  });
  a.stop();
  await waitFor(() => !stateOf(h, a.url).healthy, 3000, "ejection");
});

test("reload re-plans: removed URLs stop being probed, new settings apply, state of kept URLs survives", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hecate-health-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const a = track(healthUpstream("/h1"));
  const b = track(healthUpstream("/h2"));
  b.healthStatus = 503;
  const cfg = (routes: unknown, health: unknown) => ({
    admin: { listen: "127.0.0.1:0" },
    proxy: { listen: "127.0.0.1:0", health, routes },
    telemetry: { accessLog: false, logLevel: "warn" },
  });
  const file = join(dir, "hecate.json");
  const first = cfg([{ name: "r", upstreams: [a.url, b.url] }], { intervalSec: 0.05, path: "/h1", failThreshold: 1 });
  writeFileSync(file, JSON.stringify(first));
  const h = await start(first, { configPath: file });
  // b answers /h1 like any other path (200): healthy for now
  await waitFor(() => a.probes.length >= 2 && b.served >= 2, 3000, "both probed");
  expect(stateOf(h, b.url).healthy).toBe(true);
  const stateB = stateOf(h, b.url);

  // reload: drop a, probe /h2 (b's failing health path)
  writeFileSync(file, JSON.stringify(cfg([{ name: "r", upstreams: [b.url] }], { intervalSec: 0.05, path: "/h2", failThreshold: 1 })));
  const res = await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" });
  expect(res.status).toBe(200);
  expect(healthCheckerOf(h.rt)!.urls).toEqual([b.url]);
  await waitFor(() => !stateB.healthy, 3000, "b ejected by the new path");
  expect(stateOf(h, b.url)).toBe(stateB); // the same state object: kept across the reload
  const aCount = a.probes.length;
  await waitFor(() => b.probes.length >= 4, 3000, "b probed");
  expect(a.probes.length).toBeLessThanOrEqual(aCount + 1); // at most one probe was already in flight

  // reload with checks off: b is restored (nothing else would ever restore it)
  writeFileSync(file, JSON.stringify(cfg([{ name: "r", upstreams: [b.url] }], { intervalSec: 0 })));
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
  expect(healthCheckerOf(h.rt)!.urls).toEqual([]);
  expect(stateB.healthy).toBe(true);
  expect(stateB.history.at(-1)!.slice(1)).toEqual(["restored", "health checks disabled"]);
});

test("shutdown stops the probes", async () => {
  const a = track(healthUpstream());
  const h = await startHecate({ proxy: { health: { intervalSec: 0.03 }, routes: [{ name: "r", upstreams: [a.url] }] } });
  await waitFor(() => a.probes.length >= 2, 3000, "probes");
  await h.shutdown();
  expect(healthCheckerOf(h.rt)).toBeUndefined();
  const n = a.probes.length;
  // proving an absence needs some time: ten intervals
  await Bun.sleep(300);
  expect(a.probes.length).toBe(n);
});
