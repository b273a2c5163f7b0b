// Admin API (SPEC §4): health, readiness, drain, config (defaults + redaction), routes in
// precedence order, upstream state, debug vars, method and path handling.
import { test, expect, afterAll, describe } from "bun:test";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { adminAuth, createAdminHandler } from "../../src/admin/server.ts";
import type { Runtime } from "../../src/runtime/runtime.ts";

const TOKEN = "s3cret-admin-token";
const auth = { authorization: `Bearer ${TOKEN}` };

const up = startUpstream();
let release: () => void = () => {};
const slow = startUpstream(async () => {
  await new Promise<void>((r) => (release = r));
  return new Response("slow done");
});
const failing = startUpstream(() => new Response("down", { status: 503 }));

const h = await startHecate({
  admin: { auth: { bearerToken: TOKEN, basic: { username: "ops", password: "adminpass" } } },
  telemetry: { headers: { "x-api-key": "telemetry-secret" } },
  proxy: {
    retry: { maxRetries: 0 },
    circuitBreaker: { openAfterConsecutiveFailures: 1, cooldownSec: 60 },
    routes: [
      { name: "catchall", upstreams: [up.url] },
      { name: "apiv1", hosts: ["api.example.com"], pathPrefix: "/v1", upstreams: [{ url: up.url, weight: 3 }, slow.url] },
      { name: "wild", hosts: ["*.example.com"], upstreams: [up.url], stickiness: { enabled: true } },
      { name: "anyapi", pathPrefix: "/api", auth: { bearerToken: "route-token" }, upstreams: [up.url] },
      { name: "slow", pathPrefix: "/slow", upstreams: [slow.url] },
      { name: "failing", pathPrefix: "/failing", upstreams: [failing.url] },
    ],
  },
});

afterAll(async () => {
  release();
  await h.shutdown();
  up.stop();
  slow.stop();
  failing.stop();
});

const admin = (path: string, init: RequestInit = {}) => fetch(h.adminUrl + path, { ...init, headers: { ...auth, ...(init.headers as object) } });

async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return;
    await Bun.sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("health and readiness", () => {
  test("GET /healthz → 200 ok, without credentials", async () => {
    const r = await fetch(h.adminUrl + "/healthz");
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("ok\n");
  });

  test("GET /readyz → 200 ready once started", async () => {
    const r = await fetch(h.adminUrl + "/readyz");
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("ready\n");
  });

  test("GET /readyz → 503 starting before the runtime is ready", async () => {
    const fake = { draining: false, ready: false } as unknown as Runtime;
    const handle = createAdminHandler(fake);
    const r = await handle(new Request("http://admin.local/readyz"));
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("starting\n");
  });
});

describe("drain", () => {
  test("PUT on/off, other bodies 400, GET shows state, /readyz and public requests follow", async () => {
    let r = await admin("/admin/drain", { method: "PUT", body: "on" });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(await r.json()).toEqual({ draining: true });

    r = await fetch(h.adminUrl + "/readyz");
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("draining\n");

    r = await fetch(h.url + "/anything");
    expect(r.status).toBe(503);
    expect(await r.text()).toBe("server is draining\n");
    expect(r.headers.get("connection")).toBe("close");
    expect(r.headers.get("x-request-id")).toBeTruthy();

    r = await admin("/admin/drain");
    expect(await r.json()).toEqual({ draining: true, inflight: 0 });

    r = await admin("/admin/drain", { method: "PUT", body: "maybe" });
    expect(r.status).toBe(400);

    r = await admin("/admin/drain", { method: "PUT", body: "off" });
    expect(await r.json()).toEqual({ draining: false });
    expect((await fetch(h.adminUrl + "/readyz")).status).toBe(200);
    expect((await fetch(h.url + "/anything")).status).toBe(200);
  });

  test("POST /admin/drain and /admin/undrain (compatibility)", async () => {
    let r = await admin("/admin/drain", { method: "POST" });
    expect(await r.json()).toEqual({ draining: true });
    expect((await fetch(h.url + "/x")).status).toBe(503);
    r = await admin("/admin/undrain", { method: "POST" });
    expect(await r.json()).toEqual({ draining: false });
    expect((await fetch(h.url + "/x")).status).toBe(200);
  });

  test("in-flight requests complete while draining; new ones get 503; undrain restores", async () => {
    const seen = slow.seen.length;
    const inflight = fetch(h.url + "/slow/1");
    await until(() => slow.seen.length > seen, "the slow upstream to get the request");
    let r = await admin("/admin/drain", { method: "PUT", body: "on" });
    expect(r.status).toBe(200);
    r = await admin("/admin/drain");
    expect(await r.json()).toEqual({ draining: true, inflight: 1 });
    const rejected = await fetch(h.url + "/slow/2");
    expect(rejected.status).toBe(503);
    release();
    const done = await inflight;
    expect(done.status).toBe(200);
    expect(await done.text()).toBe("slow done");
    r = await admin("/admin/drain");
    expect(await r.json()).toEqual({ draining: true, inflight: 0 });
    await admin("/admin/drain", { method: "PUT", body: "off" });
    expect((await fetch(h.url + "/x")).status).toBe(200);
  });
});

describe("config, routes, upstreams", () => {
  test("GET /admin/config: defaults applied, secrets redacted", async () => {
    const r = await admin("/admin/config");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    const c = (await r.json()) as any;
    const raw = JSON.stringify(c);
    for (const secret of [TOKEN, "adminpass", "telemetry-secret", "route-token"]) expect(raw).not.toContain(secret);
    expect(c.admin.auth.bearerToken).toBe("<redacted>");
    expect(c.admin.auth.basic).toEqual({ username: "ops", password: "<redacted>" });
    expect(c.telemetry.headers).toEqual({ "x-api-key": "<redacted>" });
    const wild = c.proxy.routes.find((x: any) => x.name === "wild");
    expect(wild.stickiness.cookieName).toBe("hecate_sticky_wild");
    expect(c.proxy.routes.find((x: any) => x.name === "anyapi").auth.bearerToken).toBe("<redacted>");
    // defaults, also inside blocks that are present
    expect(c.proxy.retry).toMatchObject({ maxRetries: 0, perTryTimeoutSec: 2, backoffBaseMs: 50 });
    expect(c.proxy.circuitBreaker).toEqual({ openAfterConsecutiveFailures: 1, cooldownSec: 60, halfOpenMaxRequests: 10, enabled: true });
    expect(c.proxy.server.shutdownTimeoutSec).toBe(15);
    expect(c.proxy.limits.bodyBytesCap).toBe(10485760);
    expect(c.telemetry.serviceName).toBe("hecate");
    expect(c.proxy.routes[0]).toMatchObject({ name: "catchall", pathPrefix: "/", stripPrefix: false, hosts: [], lb: { algorithm: "round_robin" } });
  });

  test("GET /admin/routes lists routes in precedence order", async () => {
    const r = await admin("/admin/routes");
    expect(r.headers.get("content-type")).toBe("application/json");
    const { routes } = (await r.json()) as any;
    expect(routes.map((x: any) => x.name)).toEqual(["apiv1", "wild", "failing", "slow", "anyapi", "catchall"]);
    expect(routes[0]).toEqual({
      name: "apiv1",
      hosts: ["api.example.com"],
      pathPrefix: "/v1",
      stripPrefix: false,
      upstreams: [
        { url: up.url, weight: 3 },
        { url: slow.url, weight: 1 },
      ],
      lb: { algorithm: "round_robin" },
    });
    expect(routes[1].lb.sticky).toEqual({ mode: "cookie", name: "hecate_sticky_wild", strict: false });
  });

  test("GET /admin/upstreams shows routes, health, breaker, in-flight, last error", async () => {
    const bad = await fetch(h.url + "/failing");
    expect(bad.status).toBe(503);
    const seen = slow.seen.length;
    const pending = fetch(h.url + "/slow/x");
    await until(() => slow.seen.length > seen, "the slow upstream to get the request");
    const r = await admin("/admin/upstreams");
    expect(r.headers.get("content-type")).toBe("application/json");
    const { upstreams } = (await r.json()) as any;
    const byUrl = new Map<string, any>(upstreams.map((u: any) => [u.url, u]));
    expect(byUrl.get(up.url)).toEqual({
      url: up.url,
      origin: up.url,
      routes: ["catchall", "apiv1", "wild", "anyapi"],
      healthy: true,
      breaker: "closed",
      inflight: 0,
      lastError: "",
    });
    expect(byUrl.get(slow.url)).toMatchObject({ routes: ["apiv1", "slow"], inflight: 1, breaker: "closed" });
    expect(byUrl.get(failing.url)).toMatchObject({ routes: ["failing"], healthy: true, breaker: "open", lastError: "HTTP 503" });
    release();
    expect((await pending).status).toBe(200);
  });
});

describe("debug", () => {
  test("GET /debug/vars", async () => {
    const r = await admin("/debug/vars");
    expect(r.headers.get("content-type")).toBe("application/json");
    const v = (await r.json()) as any;
    expect(Array.isArray(v.cmdline)).toBe(true);
    expect(v.memstats.rss).toBeGreaterThan(0);
    expect(v.memstats.heapUsed).toBeGreaterThan(0);
    expect(v.memstats.heapTotal).toBeGreaterThan(0);
    expect(typeof v.uptimeSec).toBe("number");
    expect(v.generation).toBe(1);
    expect(v.inflight).toBe(0);
    expect(v.requests).toBeGreaterThan(0);
  });

  test("admin requests are not counted as public requests or in-flight", async () => {
    const a = (await (await admin("/debug/vars")).json()) as any;
    for (let i = 0; i < 5; i++) await (await admin("/admin/routes")).text();
    const b = (await (await admin("/debug/vars")).json()) as any;
    expect(b.requests).toBe(a.requests);
    expect(b.inflight).toBe(0);
    await (await fetch(h.url + "/x")).text();
    const c = (await (await admin("/debug/vars")).json()) as any;
    expect(c.requests).toBe(a.requests + 1);
  });

  test("GET /debug/pprof/ is an index", async () => {
    for (const p of ["/debug/pprof/", "/debug/pprof"]) {
      const r = await admin(p);
      expect(r.status).toBe(200);
      const body = await r.text();
      expect(body).toContain("/debug/pprof/profile");
      expect(body).toContain("/debug/pprof/heap");
    }
  });

  test("GET /metrics answers a Prometheus exposition", async () => {
    const r = await admin("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  });
});

describe("methods, paths, auth order", () => {
  test("wrong method → 405 with Allow", async () => {
    let r = await admin("/admin/reload");
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("POST");
    r = await admin("/admin/config", { method: "DELETE" });
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("GET, HEAD");
    r = await admin("/admin/drain", { method: "DELETE" });
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")!.split(", ").sort()).toEqual(["GET", "HEAD", "POST", "PUT"]);
  });

  test("HEAD is answered like GET", async () => {
    const r = await admin("/admin/routes", { method: "HEAD" });
    expect(r.status).toBe(200);
  });

  test("unknown path → 404 only after auth; /healthz and /readyz need none", async () => {
    const prev = adminAuth.check;
    adminAuth.check = (req) =>
      req.headers.get("authorization") === `Bearer ${TOKEN}`
        ? undefined
        : new Response("unauthorized\n", { status: 401, headers: { "www-authenticate": 'Bearer realm="hecate-admin"' } });
    try {
      expect((await fetch(h.adminUrl + "/no/such/path")).status).toBe(401);
      expect((await fetch(h.adminUrl + "/admin/config")).status).toBe(401);
      expect((await admin("/no/such/path")).status).toBe(404);
      expect((await fetch(h.adminUrl + "/healthz")).status).toBe(200);
      expect((await fetch(h.adminUrl + "/readyz")).status).toBe(200);
    } finally {
      adminAuth.check = prev;
    }
  });
});
