// Rate limits end to end (SPEC §2.2 limits, §2.4 rateLimit / paths, §3.1, §3.9), over real
// sockets. Rates are tiny (one token per 100 s) so no token comes back during a test, and the
// Retry-After / t= values are exact.
import { test, expect, afterAll, describe } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { getAs, recordDenials, expectGenerated } from "../helpers/policy.ts";

const SLOW = 0.01; // rps: 100 s per token
const up = startUpstream();
const denials = recordDenials();

const limits = await startHecate({ proxy: { limits: { rps: SLOW, burst: 2 }, routes: [{ name: "r", upstreams: [up.url] }] } });

const glob = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    policy: { rateLimit: { rps: SLOW, burst: 3 } }, // global, by client IP
    routes: [{ name: "r", pathPrefix: "/r", upstreams: [up.url] }],
  },
});

const keyed = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    routes: [
      { name: "hdr", pathPrefix: "/hdr", upstreams: [up.url], policy: { rateLimit: { rps: SLOW, burst: 2, key: "header:X-Api-Key" } } },
      { name: "ck", pathPrefix: "/ck", upstreams: [up.url], policy: { rateLimit: { rps: SLOW, burst: 1, key: "cookie:Session" } } },
      {
        name: "api",
        pathPrefix: "/api",
        stripPrefix: true,
        upstreams: [up.url],
        policy: {
          rateLimit: { rps: SLOW, burst: 3 },
          paths: [
            { pathPrefix: "/api/login", rateLimit: { rps: SLOW, burst: 1 } },
            { pathPrefix: "/api/login/admin", rateLimit: { rps: SLOW, burst: 2 } },
          ],
        },
      },
      { name: "pathonly", pathPrefix: "/po", upstreams: [up.url], policy: { paths: [{ pathPrefix: "/po/x", rateLimit: { rps: SLOW, burst: 1 } }] } },
    ],
  },
});

const order = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    routes: [
      { name: "authed", pathPrefix: "/authed", upstreams: [up.url], auth: { bearerToken: "t0k" }, policy: { rateLimit: { rps: SLOW, burst: 1 } } },
      {
        name: "acl",
        pathPrefix: "/acl",
        upstreams: [up.url],
        policy: { ipAcl: { denyCidrs: ["203.0.113.0/24"] }, rateLimit: { rps: SLOW, burst: 1, key: "header:X-Tenant" } },
      },
    ],
  },
});

const dir = mkdtempSync(join(tmpdir(), "hecate-rl-"));
const cfgFile = join(dir, "hecate.json");
const reloadCfg = (burst: number, extraRoute = false) => ({
  admin: { listen: "127.0.0.1:0" },
  proxy: {
    listen: "127.0.0.1:0",
    routes: [
      { name: "kept", upstreams: [up.url], policy: { rateLimit: { rps: SLOW, burst } } },
      ...(extraRoute ? [{ name: "extra", pathPrefix: "/extra", upstreams: [up.url] }] : []),
    ],
  },
  telemetry: { accessLog: false, logLevel: "warn" },
});
writeFileSync(cfgFile, JSON.stringify(reloadCfg(2)));
const reloading = await startHecate(reloadCfg(2), { configPath: cfgFile });

afterAll(async () => {
  denials.stop();
  await Promise.all([limits.shutdown(), glob.shutdown(), keyed.shutdown(), order.shutdown(), reloading.shutdown()]);
  up.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function expect429(r: Response, rule: string, burst: number) {
  await expectGenerated(r, 429, "too many requests\n", expect);
  const w = Math.ceil(burst / SLOW);
  expect(r.headers.get("retry-after")).toBe("100");
  expect(r.headers.get("ratelimit-policy")).toBe(`"${rule}";q=${burst};w=${w}`);
  expect(r.headers.get("ratelimit")).toBe(`"${rule}";r=0;t=100`);
}

test("proxy.limits: one bucket for all public traffic, rule `limits`", async () => {
  const before = denials.list.length;
  expect((await fetch(`${limits.url}/a`)).status).toBe(200);
  expect((await fetch(`${limits.url}/b`, { headers: { "x-forwarded-for": "198.51.100.1" } })).status).toBe(200);
  await expect429(await fetch(`${limits.url}/c`), "limits", 2);
  expect(denials.list.slice(before)).toEqual([{ route: "", policy: "limits" }]);
  // the admin listener is not limited
  expect((await fetch(`${limits.adminUrl}/healthz`)).status).toBe(200);
});

describe("keyed buckets", () => {
  test("global rule by client IP: one client's exhaustion does not affect another", async () => {
    expect((await getAs(`${glob.url}/r`, "198.51.100.10")).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await getAs(`${glob.url}/nothing-here`, "198.51.100.10")).status).toBe(404);
    const before = denials.list.length;
    await expect429(await getAs(`${glob.url}/r`, "198.51.100.10"), "global", 3); // before routing: same bucket for every path
    expect(denials.list.slice(before)).toEqual([{ route: "", policy: "rate_limit" }]);
    expect((await getAs(`${glob.url}/r`, "198.51.100.11")).status).toBe(200);
  });

  test("header key (name case-insensitive); requests without it are keyed by client IP", async () => {
    const ip = "198.51.100.20";
    expect((await getAs(`${keyed.url}/hdr`, ip, { "x-api-key": "alpha" })).status).toBe(200);
    expect((await getAs(`${keyed.url}/hdr`, ip, { "X-API-KEY": "alpha" })).status).toBe(200);
    const before = denials.list.length;
    await expect429(await getAs(`${keyed.url}/hdr`, ip, { "x-api-key": "alpha" }), "hdr", 2);
    expect(denials.list.slice(before)).toEqual([{ route: "hdr", policy: "rate_limit" }]);
    // same client, another key: its own bucket
    expect((await getAs(`${keyed.url}/hdr`, ip, { "x-api-key": "beta" })).status).toBe(200);
    // no header: the client IP's bucket (shared by the requests of that client without a key)
    expect((await getAs(`${keyed.url}/hdr`, "198.51.100.21")).status).toBe(200);
    expect((await getAs(`${keyed.url}/hdr`, "198.51.100.21")).status).toBe(200);
    expect((await getAs(`${keyed.url}/hdr`, "198.51.100.21")).status).toBe(429);
    expect((await getAs(`${keyed.url}/hdr`, "198.51.100.22")).status).toBe(200);
  });

  test("cookie key is case-sensitive", async () => {
    const ip = "198.51.100.30";
    expect((await getAs(`${keyed.url}/ck`, ip, { cookie: "a=1; Session=s1" })).status).toBe(200);
    await expect429(await getAs(`${keyed.url}/ck`, ip, { cookie: "Session=s1" }), "ck", 1);
    expect((await getAs(`${keyed.url}/ck`, ip, { cookie: "Session=s2" })).status).toBe(200);
    // "session" is another cookie: keyed by the client IP (first use of that bucket)
    expect((await getAs(`${keyed.url}/ck`, ip, { cookie: "session=s1" })).status).toBe(200);
    expect((await getAs(`${keyed.url}/ck`, ip, { cookie: "session=s9" })).status).toBe(429);
  });
});

describe("paths overrides", () => {
  const ip = "198.51.100.40";
  test("the longest matching prefix replaces the route rule; each rule has its own buckets", async () => {
    expect((await getAs(`${keyed.url}/api/login`, ip)).status).toBe(200);
    expect(up.seen.at(-1)!.path).toBe("/login"); // matched before stripPrefix
    await expect429(await getAs(`${keyed.url}/api/login?x=1`, ip), "api-path-0", 1);
    expect((await getAs(`${keyed.url}/api/login/admin`, ip)).status).toBe(200);
    expect((await getAs(`${keyed.url}/api/login/admin/x`, ip)).status).toBe(200);
    await expect429(await getAs(`${keyed.url}/api/login/admin`, ip), "api-path-1", 2);
    // the route's own bucket was never touched by the path requests
    for (let i = 0; i < 3; i++) expect((await getAs(`${keyed.url}/api/other`, ip)).status).toBe(200);
    // "/api/loginx" is not under "/api/login" (segment boundary): route rule
    await expect429(await getAs(`${keyed.url}/api/loginx`, ip), "api", 3);
  });

  test("the route rule does not also apply to overridden paths", async () => {
    const ip2 = "198.51.100.41";
    for (let i = 0; i < 3; i++) expect((await getAs(`${keyed.url}/api/x`, ip2)).status).toBe(200);
    expect((await getAs(`${keyed.url}/api/x`, ip2)).status).toBe(429);
    expect((await getAs(`${keyed.url}/api/login`, ip2)).status).toBe(200); // only the path rule counts
  });

  test("paths without a route rule limit only their paths", async () => {
    const ip3 = "198.51.100.42";
    expect((await getAs(`${keyed.url}/po/x`, ip3)).status).toBe(200);
    expect((await getAs(`${keyed.url}/po/x`, ip3)).status).toBe(429);
    for (let i = 0; i < 4; i++) expect((await getAs(`${keyed.url}/po/y`, ip3)).status).toBe(200);
  });
});

describe("no token is taken by a request an earlier stage rejected", () => {
  test("401 from route auth leaves the route bucket full", async () => {
    const ip = "198.51.100.50";
    for (let i = 0; i < 5; i++) expect((await getAs(`${order.url}/authed`, ip)).status).toBe(401);
    expect((await getAs(`${order.url}/authed`, ip, { authorization: "Bearer t0k" })).status).toBe(200);
    expect((await getAs(`${order.url}/authed`, ip, { authorization: "Bearer t0k" })).status).toBe(429);
  });

  test("403 from the route ACL leaves the bucket of the same key full", async () => {
    for (let i = 0; i < 5; i++) expect((await getAs(`${order.url}/acl`, "203.0.113.9", { "x-tenant": "t1" })).status).toBe(403);
    expect((await getAs(`${order.url}/acl`, "198.51.100.51", { "x-tenant": "t1" })).status).toBe(200);
    expect((await getAs(`${order.url}/acl`, "198.51.100.51", { "x-tenant": "t1" })).status).toBe(429);
  });
});

test("reload keeps the buckets of an unchanged rule and starts a changed one afresh", async () => {
  const url = `${reloading.url}/`;
  expect((await fetch(url)).status).toBe(200);
  expect((await fetch(url)).status).toBe(200);
  expect((await fetch(url)).status).toBe(429);
  writeFileSync(cfgFile, JSON.stringify(reloadCfg(2, true))); // another route added, "kept" unchanged
  let r = await fetch(`${reloading.adminUrl}/admin/reload`, { method: "POST" });
  expect(r.status).toBe(200);
  expect((await fetch(url)).status).toBe(429); // still empty
  writeFileSync(cfgFile, JSON.stringify(reloadCfg(3, true))); // burst changed: a new rule
  r = await fetch(`${reloading.adminUrl}/admin/reload`, { method: "POST" });
  expect(r.status).toBe(200);
  for (let i = 0; i < 3; i++) expect((await fetch(url)).status).toBe(200);
  expect((await fetch(url)).status).toBe(429);
});
