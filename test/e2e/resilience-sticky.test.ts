// Stickiness (SPEC §3.4): an opaque marker (first 16 hex digits of SHA-256 over
// "<route> <upstream URL>") in a cookie or a header, re-issued on every response (sliding TTL);
// an unavailable pinned upstream → re-pick (soft) or 503 (strict).
import { test, expect, afterEach } from "bun:test";
import { createHash } from "node:crypto";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { statusUpstream, healthUpstream, waitFor, type Fixture } from "../helpers/faults.ts";
import { issueSticky, selectUpstream } from "../../src/upstream/select.ts";
import type { Exchange } from "../../src/pipeline/exchange.ts";
import type { StickySettings } from "../../src/config/compile.ts";
import type { UpstreamTarget } from "../../src/upstream/target.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
function track<T extends Fixture>(f: T): T {
  cleanup.push(() => f.stop());
  return f;
}
async function start(routes: Record<string, any>[], proxy: Record<string, any> = {}): Promise<Hecate> {
  const h = await startHecate({ proxy: { ...proxy, routes } });
  cleanup.push(() => h.shutdown());
  return h;
}
const idOf = (route: string, url: string) => createHash("sha256").update(`${route} ${url}`).digest("hex").slice(0, 16);

async function get(h: Hecate, headers: Record<string, string> = {}) {
  const r = await fetch(`${h.url}/x`, { headers });
  const text = await r.text();
  let port = 0;
  try {
    port = (JSON.parse(text) as { port: number }).port;
  } catch {}
  return { status: r.status, port, text, headers: r.headers };
}

test("cookie mode: pins to the upstream that answered, re-issues the cookie on every response", async () => {
  const a = track(statusUpstream([200]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "web", upstreams: [a.url, b.url], stickiness: { enabled: true } }]);
  const first = await get(h);
  const url = first.port === a.port ? a.url : b.url;
  const id = idOf("web", url);
  expect(first.headers.get("set-cookie")).toBe(`hecate_sticky_web=${id}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`);
  expect(first.headers.get("set-cookie")).not.toContain("127.0.0.1"); // opaque: never the address
  for (let i = 0; i < 8; i++) {
    const r = await get(h, { cookie: `other=1; hecate_sticky_web=${id}; more=2` });
    expect(r.port).toBe(first.port);
    expect(r.headers.get("set-cookie")).toBe(`hecate_sticky_web=${id}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`); // sliding TTL
  }
  // without the cookie, round robin alternates: the pinning above was the cookie's doing
  const ports = new Set<number>();
  for (let i = 0; i < 4; i++) ports.add((await get(h)).port);
  expect(ports.size).toBe(2);
});

test("cookie mode: cookieName and ttlSeconds", async () => {
  const a = track(statusUpstream([200]));
  const h = await start([{ name: "r", upstreams: [a.url], stickiness: { enabled: true, cookieName: "SID", ttlSeconds: 60 } }]);
  const r = await get(h);
  expect(r.headers.get("set-cookie")).toBe(`SID=${idOf("r", a.url)}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax`);
});

test("header mode: the marker travels in a header both ways", async () => {
  const a = track(statusUpstream([200]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "api", upstreams: [a.url, b.url], stickiness: { enabled: true, mode: "header", headerName: "X-Pin" } }]);
  const first = await get(h);
  const id = first.headers.get("x-pin")!;
  expect(id).toBe(idOf("api", first.port === a.port ? a.url : b.url));
  expect(first.headers.get("set-cookie")).toBeNull();
  for (let i = 0; i < 6; i++) {
    const r = await get(h, { "x-pin": id });
    expect(r.port).toBe(first.port);
    expect(r.headers.get("x-pin")).toBe(id);
  }
});

test("an unknown or forged marker is ignored", async () => {
  const a = track(statusUpstream([200]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "r", upstreams: [a.url, b.url], stickiness: { enabled: true, strict: true } }]);
  const ports = new Set<number>();
  for (const forged of ["0000000000000000", "127.0.0.1:" + a.port, idOf("other-route", a.url), ""]) {
    const r = await get(h, { cookie: `hecate_sticky_r=${forged}` });
    expect(r.status).toBe(200);
    ports.add(r.port);
    expect(r.headers.get("set-cookie")).toStartWith(`hecate_sticky_r=${idOf("r", r.port === a.port ? a.url : b.url)};`);
  }
  expect(ports.size).toBe(2); // the balancer decided
});

test("strict: pinned upstream unavailable (breaker open) → 503 sticky upstream unavailable", async () => {
  const a = track(statusUpstream([200]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "r", upstreams: [a.url, b.url], stickiness: { enabled: true, strict: true }, retry: { maxRetries: 0 } }], {
    circuitBreaker: { openAfterConsecutiveFailures: 1, cooldownSec: 30 },
  });
  const pin = `hecate_sticky_r=${idOf("r", a.url)}`;
  expect((await get(h, { cookie: pin })).port).toBe(a.port);
  a.setStatuses([503]);
  expect((await get(h, { cookie: pin })).status).toBe(503); // a's own 503 opens its breaker
  const seenA = a.seen.length;
  const r = await get(h, { cookie: pin });
  expect(r.status).toBe(503);
  expect(r.text).toBe("sticky upstream unavailable\n");
  expect(r.headers.get("x-request-id")).toBeTruthy();
  expect(a.seen.length).toBe(seenA);
  expect(b.seen.length).toBe(0);
  // unpinned requests still work, on b
  expect((await get(h)).port).toBe(b.port);
});

test("soft: pinned upstream unavailable (ejected) → re-picked and re-pinned", async () => {
  const a = track(healthUpstream());
  const b = track(healthUpstream());
  const h = await start([{ name: "r", upstreams: [a.url, b.url], stickiness: { enabled: true } }], {
    health: { intervalSec: 0.05, failThreshold: 1, successReset: 1 },
  });
  const pinA = `hecate_sticky_r=${idOf("r", a.url)}`;
  expect((await get(h, { cookie: pinA })).port).toBe(a.port);
  a.healthStatus = 503;
  await waitFor(() => !h.rt.registry.byUrl.get(a.url)!.healthy, 3000, "a ejected");
  const r = await get(h, { cookie: pinA });
  expect(r.status).toBe(200);
  expect(r.port).toBe(b.port);
  const newCookie = `hecate_sticky_r=${idOf("r", b.url)}`;
  expect(r.headers.get("set-cookie")).toStartWith(newCookie + ";");
  // a comes back: the client now carries b's marker and stays on b
  a.healthStatus = 200;
  await waitFor(() => h.rt.registry.byUrl.get(a.url)!.healthy, 3000, "a restored");
  for (let i = 0; i < 4; i++) expect((await get(h, { cookie: newCookie })).port).toBe(b.port);
});

test("a retry may land elsewhere and re-pins there", async () => {
  const a = track(statusUpstream([503]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "r", upstreams: [a.url, b.url], stickiness: { enabled: true, strict: true } }], {
    retry: { backoffBaseMs: 1, backoffMaxMs: 1 },
    circuitBreaker: { enabled: false },
  });
  const r = await get(h, { cookie: `hecate_sticky_r=${idOf("r", a.url)}` });
  expect(r.status).toBe(200);
  expect(r.port).toBe(b.port);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  expect(r.headers.get("set-cookie")).toStartWith(`hecate_sticky_r=${idOf("r", b.url)};`);
});

test("the marker is the same across instances (and so across restarts)", async () => {
  const a = track(statusUpstream([200]));
  const routes = [{ name: "r", upstreams: [a.url], stickiness: { enabled: true } }];
  const h1 = await start(routes);
  const h2 = await start(routes);
  const c1 = (await get(h1)).headers.get("set-cookie");
  expect(c1).toBe((await get(h2)).headers.get("set-cookie"));
});

test("Secure is added on TLS listeners", () => {
  const s: StickySettings = { mode: "cookie", name: "c", headerName: "X-Hecate-Sticky", ttlSeconds: 10, strict: false, byId: new Map() };
  const t = { stickyId: "0123456789abcdef" } as UpstreamTarget;
  const tlsHeaders = new Headers();
  issueSticky({ tls: true } as Exchange, s, t, tlsHeaders);
  expect(tlsHeaders.get("set-cookie")).toBe("c=0123456789abcdef; Path=/; Max-Age=10; HttpOnly; SameSite=Lax; Secure");
  const plain = new Headers();
  issueSticky({ tls: false } as Exchange, s, t, plain);
  expect(plain.get("set-cookie")).toBe("c=0123456789abcdef; Path=/; Max-Age=10; HttpOnly; SameSite=Lax");
});

test("dry-run selection (explain) follows the marker without advancing the balancer", async () => {
  const a = track(statusUpstream([200]));
  const b = track(statusUpstream([200]));
  const h = await start([{ name: "r", upstreams: [a.url, b.url], stickiness: { enabled: true } }]);
  const route = h.rt.gen.compiled.routes[0]!;
  const ex = { req: new Request("http://x/", { headers: { cookie: `hecate_sticky_r=${idOf("r", b.url)}` } }), clientIp: "1.2.3.4" } as unknown as Exchange;
  for (let i = 0; i < 3; i++) expect((selectUpstream(ex, route, null, Date.now(), true) as UpstreamTarget).url).toBe(b.url);
  // the balancer did not move: the first real request still goes to the first upstream
  expect((await get(h)).port).toBe(a.port);
});
