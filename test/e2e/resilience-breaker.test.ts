// Circuit breaking (SPEC §3.5): per upstream origin, shared by routes; closed → open after N
// consecutive failures; open for cooldownSec (the balancer skips it); half-open with at most
// halfOpenMaxRequests trials; that many successes close it, a trial failure re-opens it.
import { test, expect, afterEach } from "bun:test";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { statusUpstream, refusedUrl, waitFor, type Fixture } from "../helpers/faults.ts";
import { CircuitBreaker, type BreakerState } from "../../src/upstream/breaker.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
function track<T extends Fixture>(f: T): T {
  cleanup.push(() => f.stop());
  return f;
}
async function start(config: Record<string, any>): Promise<Hecate> {
  const h = await startHecate(config);
  cleanup.push(() => h.shutdown());
  return h;
}

async function upstreamsView(h: Hecate): Promise<Map<string, { breaker: string; healthy: boolean }>> {
  const j = (await (await fetch(`${h.adminUrl}/admin/upstreams`)).json()) as { upstreams: { url: string; breaker: string; healthy: boolean }[] };
  return new Map(j.upstreams.map((u) => [u.url, u]));
}

async function get(h: Hecate, path = "/x"): Promise<{ status: number; port: number | null; body: string }> {
  const r = await fetch(`${h.url}${path}`);
  const body = await r.text();
  let port: number | null = null;
  try {
    port = (JSON.parse(body) as { port: number }).port;
  } catch {}
  return { status: r.status, port, body };
}

test("opens after N consecutive failures, skips the upstream while open, half-opens after the cooldown, closes after the trials", async () => {
  const a = track(statusUpstream([503]));
  const b = track(statusUpstream([200]));
  const h = await start({
    proxy: {
      retry: { maxRetries: 0 },
      circuitBreaker: { openAfterConsecutiveFailures: 3, cooldownSec: 0.3, halfOpenMaxRequests: 2 },
      routes: [{ name: "r", upstreams: [a.url, b.url] }],
    },
  });
  // round robin alternates: a's 3rd failure comes with the 5th request
  const statuses: number[] = [];
  while (a.seen.length < 3) statuses.push((await get(h)).status);
  expect(statuses).toEqual([503, 200, 503, 200, 503]);
  expect((await upstreamsView(h)).get(a.url)!.breaker).toBe("open");
  const openedAt = performance.now();

  // while open, every request goes to b
  for (let i = 0; i < 8; i++) expect((await get(h)).port).toBe(b.port);
  expect(a.seen.length).toBe(3);
  expect(performance.now() - openedAt).toBeLessThan(300); // really inside the cooldown

  // a recovers; after the cooldown it is tried again (half-open) and closes after 2 successes
  a.setStatuses([200]);
  await waitFor(() => performance.now() - openedAt > 320, 2000, "cooldown");
  const before = a.seen.length;
  const ports: number[] = [];
  for (let i = 0; i < 6; i++) ports.push((await get(h)).port!);
  expect(ports.filter((p) => p === a.port).length).toBeGreaterThanOrEqual(2);
  expect(a.seen.length).toBeGreaterThan(before);
  expect((await upstreamsView(h)).get(a.url)!.breaker).toBe("closed");
});

test("a failed trial re-opens the breaker for another cooldown", async () => {
  const a = track(statusUpstream([503]));
  const b = track(statusUpstream([200]));
  const h = await start({
    proxy: {
      retry: { maxRetries: 0 },
      circuitBreaker: { openAfterConsecutiveFailures: 1, cooldownSec: 0.2, halfOpenMaxRequests: 1 },
      routes: [{ name: "r", upstreams: [a.url, b.url] }],
    },
  });
  expect((await get(h)).status).toBe(503); // a fails once → open
  const breaker = h.rt.registry.breakers.get(new URL(a.url).origin)!;
  expect(breaker.state).toBe("open");
  await waitFor(() => Date.now() - breaker.openedAt >= 200, 2000, "cooldown");
  // the next request that round robin gives to a is its trial: it fails → open again
  const seenBefore = a.seen.length;
  while (a.seen.length === seenBefore) await get(h);
  expect(breaker.state).toBe("open");
  const reopenedAt = breaker.openedAt;
  for (let i = 0; i < 5; i++) expect((await get(h)).port).toBe(b.port);
  expect(a.seen.length).toBe(seenBefore + 1);
  expect(Date.now() - reopenedAt).toBeLessThan(200);
});

test("every upstream unavailable → 503 no healthy upstream", async () => {
  const h = await start({
    proxy: {
      retry: { maxRetries: 0 },
      circuitBreaker: { openAfterConsecutiveFailures: 1, cooldownSec: 30 },
      routes: [{ name: "r", upstreams: [refusedUrl()] }],
    },
  });
  const first = await get(h);
  expect(first.status).toBe(502); // the connect error itself
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(503);
  expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(r.headers.get("x-request-id")).toBeTruthy();
  expect(await r.text()).toBe("no healthy upstream\n");
});

test("one breaker per origin, shared by the routes (and base paths) that use it", async () => {
  const a = track(statusUpstream([503]));
  const b = track(statusUpstream([200]));
  const h = await start({
    proxy: {
      retry: { maxRetries: 0 },
      circuitBreaker: { openAfterConsecutiveFailures: 2, cooldownSec: 30 },
      routes: [
        { name: "one", pathPrefix: "/one", upstreams: [a.url + "/v1"] },
        { name: "two", pathPrefix: "/two", upstreams: [a.url + "/v2", b.url] },
      ],
    },
  });
  expect((await get(h, "/one")).status).toBe(503);
  expect((await get(h, "/one")).status).toBe(503);
  // route "two" never sent anything to a, yet skips it: its first pick would have been a
  for (let i = 0; i < 4; i++) expect((await get(h, "/two")).port).toBe(b.port);
  expect(a.seen.every((s) => s.path.startsWith("/v1"))).toBe(true);
  expect((await get(h, "/one")).body).toBe("no healthy upstream\n");
});

test("a disabled breaker never opens", async () => {
  const a = track(statusUpstream([503]));
  const h = await start({
    proxy: {
      retry: { maxRetries: 0 },
      circuitBreaker: { enabled: false, openAfterConsecutiveFailures: 1 },
      routes: [{ name: "r", upstreams: [a.url] }],
    },
  });
  for (let i = 0; i < 5; i++) expect((await get(h)).status).toBe(503);
  expect(a.seen.length).toBe(5);
});

// --- the state machine on its own ------------------------------------------------------------

function breaker(settings: Partial<{ openAfterConsecutiveFailures: number; cooldownMs: number; halfOpenMaxRequests: number; enabled: boolean }> = {}) {
  const changes: [BreakerState, BreakerState][] = [];
  const b = new CircuitBreaker(
    "http://u:80",
    { enabled: true, openAfterConsecutiveFailures: 3, cooldownMs: 1000, halfOpenMaxRequests: 2, ...settings },
    (_o, from, to) => changes.push([from, to]),
  );
  return { b, changes };
}

test("breaker: successes reset the consecutive count", () => {
  const { b } = breaker();
  b.onFailure(b.onSend(), 0);
  b.onFailure(b.onSend(), 0);
  b.onSuccess(b.onSend());
  b.onFailure(b.onSend(), 0);
  b.onFailure(b.onSend(), 0);
  expect(b.state).toBe("closed");
  b.onFailure(b.onSend(), 0);
  expect(b.state).toBe("open");
});

test("breaker: half-open admits at most halfOpenMaxRequests trials in flight", () => {
  const { b, changes } = breaker();
  for (let i = 0; i < 3; i++) b.onFailure(b.onSend(), 0);
  expect(b.available(999)).toBe(false);
  expect(b.available(1000)).toBe(true);
  expect(b.state).toBe("half-open");
  const t1 = b.onSend();
  expect(b.available(1000)).toBe(true);
  const t2 = b.onSend();
  expect(b.available(1000)).toBe(false); // 2 trials in flight
  b.onSuccess(t1);
  expect(b.available(1000)).toBe(true);
  b.onSuccess(t2);
  expect(b.state).toBe("closed");
  expect(changes).toEqual([
    ["closed", "open"],
    ["open", "half-open"],
    ["half-open", "closed"],
  ]);
});

test("breaker: an aborted trial frees its slot without a verdict", () => {
  const { b } = breaker({ halfOpenMaxRequests: 1 });
  for (let i = 0; i < 3; i++) b.onFailure(b.onSend(), 0);
  expect(b.available(1000)).toBe(true);
  const t = b.onSend();
  expect(b.available(1000)).toBe(false);
  b.onAbort(t);
  expect(b.available(1000)).toBe(true);
  expect(b.state).toBe("half-open");
});

test("breaker: only trials decide a half-open breaker; a stale trial of an earlier period does not", () => {
  const { b } = breaker({ halfOpenMaxRequests: 1 });
  const stale = b.onSend(); // sent while closed
  for (let i = 0; i < 3; i++) b.onFailure(b.onSend(), 0);
  b.available(1000); // half-open, period 1
  const trial1 = b.onSend();
  b.onFailure(stale, 1000); // a request from before: no say
  expect(b.state).toBe("half-open");
  b.onFailure(trial1, 1000); // the trial fails → open again
  expect(b.state).toBe("open");
  b.available(2000); // half-open, period 2
  b.onSuccess(trial1); // late answer of period 1's trial: ignored
  expect(b.state).toBe("half-open");
  b.onSuccess(b.onSend());
  expect(b.state).toBe("closed");
});
