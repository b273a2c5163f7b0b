// GET /admin/explain (SPEC §4): route precedence with reasons (SPEC §3.2), upstream
// eligibility (unhealthy, breaker open, sticky pin) and the upstream that would be chosen now,
// without sending anything upstream or advancing a balancer.
import { test, expect, afterAll } from "bun:test";
import { startHecate, startUpstream } from "../helpers/hecate.ts";

const A = startUpstream();
const B = startUpstream();
const C = startUpstream();
const D = startUpstream(); // only behind the "breaker" route

const h = await startHecate({
  proxy: {
    circuitBreaker: { openAfterConsecutiveFailures: 1, cooldownSec: 60 },
    retry: { maxRetries: 0 },
    routes: [
      { name: "api", hosts: ["api.example.com"], pathPrefix: "/api", upstreams: [A.url] },
      { name: "api-v2", hosts: ["api.example.com"], pathPrefix: "/api/v2", upstreams: [B.url] },
      { name: "api-dup", hosts: ["api.example.com"], pathPrefix: "/api", upstreams: [C.url] },
      { name: "wild", hosts: ["*.example.com"], upstreams: [A.url, B.url] },
      { name: "wild-eu", hosts: ["*.eu.example.com"], upstreams: [B.url] },
      { name: "sticky", hosts: ["sticky.test"], upstreams: [A.url, B.url, C.url], stickiness: { enabled: true } },
      { name: "strict", hosts: ["strict.test"], upstreams: [A.url, B.url], stickiness: { enabled: true, mode: "header", strict: true } },
      { name: "breaker", hosts: ["breaker.test"], upstreams: [D.url, C.url] },
      { name: "hash", hosts: ["hash.test"], upstreams: [A.url, B.url, C.url], lb: { algorithm: "maglev", hashKey: "X-User", maglevTableSize: 307 } },
      { name: "any", upstreams: [A.url, B.url, C.url] },
    ],
  },
});

afterAll(async () => {
  await h.shutdown();
  for (const u of [A, B, C, D]) u.stop();
});

type Explained = {
  route: string | null;
  routes: { name: string; matched: boolean; reason: string }[];
  upstreams: { url: string; eligible: boolean; reason: string }[];
  chosen: string | null;
  notes: string[];
};

async function explain(q: Record<string, string | string[]>): Promise<Explained> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  const r = await fetch(`${h.adminUrl}/admin/explain?${p}`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toStartWith("application/json");
  return (await r.json()) as Explained;
}

const verdict = (e: Explained, name: string) => e.routes.find((r) => r.name === name)!;
const up = (e: Explained, url: string) => e.upstreams.find((u) => u.url === url)!;
const seenTotal = () => A.seen.length + B.seen.length + C.seen.length + D.seen.length;

function stickyId(route: string, url: string): string {
  return new Bun.CryptoHasher("sha256").update(`${route} ${url}`).digest("hex").slice(0, 16);
}

test("exact host, longest prefix; the others say why not, in precedence order", async () => {
  const e = await explain({ method: "GET", host: "API.Example.com:8443", path: "/api/v2/items?x=1" });
  expect(e.route).toBe("api-v2");
  expect(e.routes.slice(0, 3).map((r) => r.name)).toEqual(["api-v2", "api", "api-dup"]); // exact class: longest prefix, then file order
  const routes = (await (await fetch(`${h.adminUrl}/admin/routes`)).json()) as { routes: { name: string }[] };
  expect(e.routes.map((r) => r.name)).toEqual(routes.routes.map((r) => r.name)); // same precedence order as /admin/routes
  expect(e.routes.filter((r) => r.matched).map((r) => r.name)).toEqual(["api-v2"]);
  expect(verdict(e, "api-v2").reason).toContain("exact host api.example.com");
  expect(verdict(e, "api").reason).toMatch(/^shadowed by "api-v2": longer path prefix/);
  expect(verdict(e, "wild").reason).toMatch(/^shadowed by "api-v2": exact host api\.example\.com beats wildcard host \*\.example\.com/);
  expect(verdict(e, "any").reason).toMatch(/^shadowed by "api-v2": exact host .* beats any-host/);
  expect(verdict(e, "wild-eu").reason).toMatch(/^host mismatch/);
  expect(verdict(e, "sticky").reason).toMatch(/^host mismatch/);
  expect(e.upstreams).toEqual([{ url: B.url, eligible: true, reason: "healthy, breaker closed" }]);
  expect(e.chosen).toBe(B.url);
});

test("same prefix: the earlier route wins; a shorter prefix does not match a longer path segment", async () => {
  const e = await explain({ host: "api.example.com", path: "/api/x" });
  expect(e.route).toBe("api");
  expect(verdict(e, "api-dup").reason).toBe('shadowed by "api": same path prefix, earlier in the file');
  expect(verdict(e, "api-v2").reason).toMatch(/^path prefix mismatch: "\/api\/v2" does not match "\/api\/x"/);
  // segment boundary: /apix is not under /api
  const f = await explain({ host: "api.example.com", path: "/apix" });
  expect(verdict(f, "api").reason).toMatch(/^path prefix mismatch/);
  expect(f.route).toBe("wild");
});

test("no path match in the exact class falls through to the wildcard class", async () => {
  const e = await explain({ host: "api.example.com", path: "/other" });
  expect(e.route).toBe("wild");
  expect(verdict(e, "wild").reason).toContain("after no route of a better host class matched the path");
  expect(verdict(e, "api").reason).toMatch(/^path prefix mismatch/);
  expect(verdict(e, "any").reason).toMatch(/^shadowed by "wild": wildcard host \*\.example\.com beats any-host/);
});

test("wildcards: the longer suffix wins, and *.example.com does not match example.com", async () => {
  const e = await explain({ host: "shop.eu.example.com", path: "/" });
  expect(e.route).toBe("wild-eu");
  expect(verdict(e, "wild").reason).toBe('shadowed by "wild-eu": wildcard host *.eu.example.com beats wildcard host *.example.com');
  expect(verdict(e, "api").reason).toMatch(/^host mismatch/);

  const bare = await explain({ host: "example.com", path: "/" });
  expect(bare.route).toBe("any");
  expect(verdict(bare, "wild").reason).toMatch(/^host mismatch: "example.com" is not one of "\*\.example\.com"/);
  expect(bare.upstreams.map((u) => u.url)).toEqual([A.url, B.url, C.url]);
});

test("dry run: nothing is sent upstream and round robin does not advance; a real request then goes to the chosen one", async () => {
  const before = seenTotal();
  const first = await explain({ host: "nowhere.test", path: "/" });
  expect(first.route).toBe("any");
  for (let i = 0; i < 5; i++) expect((await explain({ host: "nowhere.test", path: "/" })).chosen).toBe(first.chosen!);
  expect(seenTotal()).toBe(before);

  const r = await fetch(`${h.url}/dry`, { headers: { host: "nowhere.test" } });
  expect(r.status).toBe(200);
  const port = ((await r.json()) as { port: number }).port;
  expect(first.chosen).toBe(`http://127.0.0.1:${port}`);
  // the real request advanced the balancer: explain now names the next one
  const next = await explain({ host: "nowhere.test", path: "/" });
  expect(next.chosen).not.toBe(first.chosen);
});

test("an ejected upstream is not eligible and is not chosen", async () => {
  const st = h.rt.registry.byUrl.get(A.url)!;
  st.healthy = false;
  try {
    for (let i = 0; i < 3; i++) {
      const e = await explain({ host: "nowhere.test", path: "/" });
      expect(up(e, A.url).eligible).toBe(false);
      expect(up(e, A.url).reason).toMatch(/^unhealthy/);
      expect(up(e, B.url).eligible).toBe(true);
      expect(e.chosen).not.toBe(A.url);
      expect(e.chosen).not.toBeNull();
    }
  } finally {
    st.healthy = true;
  }
  const e = await explain({ host: "nowhere.test", path: "/" });
  expect(up(e, A.url).eligible).toBe(true);
});

test("an open breaker makes its upstream ineligible", async () => {
  D.server.stop(true); // D refuses connections now: one failure opens its breaker
  const r = await fetch(`${h.url}/`, { headers: { host: "breaker.test" } });
  expect(r.status).toBe(502);
  const e = await explain({ host: "breaker.test", path: "/" });
  expect(up(e, D.url).eligible).toBe(false);
  expect(up(e, D.url).reason).toMatch(/^breaker open for http:\/\/127\.0\.0\.1:\d+: \d+ s of cooldown left/);
  expect(up(e, C.url).eligible).toBe(true);
  expect(e.chosen).toBe(C.url);
});

test("sticky pin: a cookie pins the upstream; unknown ids are ignored; an ejected pin is re-picked or refused (strict)", async () => {
  const idB = stickyId("sticky", B.url);
  const e = await explain({ host: "sticky.test", path: "/", header: [`Cookie: other=1; hecate_sticky_sticky=${idB}`] });
  expect(e.route).toBe("sticky");
  expect(e.chosen).toBe(B.url);
  expect(up(e, B.url).reason).toMatch(/^sticky target; healthy/);
  expect(up(e, A.url).reason).toContain(`not used: the request is pinned to ${B.url}`);
  expect(e.notes.join("\n")).toContain(`pinned to ${B.url} by cookie hecate_sticky_sticky`);
  // the proxy agrees
  const before = B.seen.length;
  const r = await fetch(`${h.url}/s`, { headers: { host: "sticky.test", cookie: `hecate_sticky_sticky=${idB}` } });
  expect(r.status).toBe(200);
  expect(B.seen.length).toBe(before + 1);

  const forged = await explain({ host: "sticky.test", path: "/", header: "Cookie: hecate_sticky_sticky=ffffffffffffffff" });
  expect(forged.notes.join("\n")).toContain("is unknown: ignored");
  expect(forged.chosen).not.toBeNull();

  const st = h.rt.registry.byUrl.get(B.url)!;
  st.healthy = false;
  try {
    const loose = await explain({ host: "sticky.test", path: "/", header: `Cookie: hecate_sticky_sticky=${idB}` });
    expect(up(loose, B.url).eligible).toBe(false);
    expect(up(loose, B.url).reason).toMatch(/^sticky target, unavailable: unhealthy/);
    expect(loose.chosen).not.toBe(B.url);
    expect(loose.chosen).not.toBeNull();
    expect(loose.notes.join("\n")).toContain("re-picked by the balancer");

    const strict = await explain({ host: "strict.test", path: "/", header: `X-Hecate-Sticky: ${stickyId("strict", B.url)}` });
    expect(strict.route).toBe("strict");
    expect(strict.chosen).toBeNull();
    expect(strict.notes.join("\n")).toContain("503 sticky upstream unavailable");
    const real = await fetch(`${h.url}/`, { headers: { host: "strict.test", "x-hecate-sticky": stickyId("strict", B.url) } });
    expect(real.status).toBe(503);
    expect(await real.text()).toBe("sticky upstream unavailable\n");
  } finally {
    st.healthy = true;
  }
});

test("consistent hashing: explain names the upstream the proxy then uses, by header key or client IP", async () => {
  for (const user of ["alice", "bob", "carol", "dave", "erin", "frank"]) {
    const e = await explain({ host: "hash.test", path: "/", header: `X-User: ${user}` });
    expect(e.notes.join("\n")).toContain(`consistent hashing on "${user}"`);
    const r = await fetch(`${h.url}/`, { headers: { host: "hash.test", "x-user": user } });
    expect(e.chosen).toBe(`http://127.0.0.1:${((await r.json()) as { port: number }).port}`);
  }
  const byIp = await explain({ host: "hash.test", path: "/", ip: "127.0.0.1" });
  const r = await fetch(`${h.url}/`, { headers: { host: "hash.test" } });
  expect(byIp.chosen).toBe(`http://127.0.0.1:${((await r.json()) as { port: number }).port}`);
});

test("no route, drain note, and bad queries", async () => {
  const h2 = await startHecate({ proxy: { routes: [{ name: "only", hosts: ["a.test"], upstreams: [A.url] }] } });
  try {
    const e = (await (await fetch(`${h2.adminUrl}/admin/explain?host=b.test&path=/`)).json()) as Explained;
    expect(e.route).toBeNull();
    expect(e.chosen).toBeNull();
    expect(e.upstreams).toEqual([]);
    expect(e.routes).toEqual([{ name: "only", matched: false, reason: 'host mismatch: "b.test" is not one of "a.test"' }]);
    h2.rt.draining = true;
    const d = (await (await fetch(`${h2.adminUrl}/admin/explain?host=a.test&path=/`)).json()) as Explained;
    expect(d.route).toBe("only");
    expect(d.notes.join("\n")).toContain("draining");
  } finally {
    await h2.shutdown();
  }
  for (const q of ["path=/", "host=a.test&path=nope", "host=a.test&header=NoColon", "host=a.test&method=G%20T"]) {
    const r = await fetch(`${h.adminUrl}/admin/explain?${q}`);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBeString();
  }
  expect((await fetch(`${h.adminUrl}/admin/explain?host=a.test`, { method: "POST" })).status).toBe(405);
});
