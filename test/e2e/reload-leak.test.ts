// 1,000 reloads must not leak: the timers of old generations are released, file descriptors
// (database handles, sockets) do not pile up, the upstream registry keeps only what the live
// generation uses, and RSS stays bounded.
//
// Timers are counted with `bun:jsc` heapStats().objectTypeCounts.Timeout after a full GC: a
// live setTimeout/setInterval is held by the event loop and so stays in that count, a
// cleared and unreferenced one is collected. (`process.getActiveResourcesInfo()` exists in
// Bun 1.4.5 but always answers [], so it cannot see a leak.)
import { test, expect, afterAll } from "bun:test";
import { copyFileSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { heapStats } from "bun:jsc";
import { startHecate } from "../helpers/hecate.ts";
import { reload } from "../../src/runtime/reload.ts";

const dir = mkdtempSync(join(tmpdir(), "hecate-leak-"));
const file = join(dir, "hecate.yaml");
const geo = join(dir, "country.mmdb");
const asn = join(dir, "asn.mmdb");
copyFileSync("../shared/testdata/geo/GeoLite2-Country-Test.mmdb", geo);
copyFileSync("../shared/testdata/geo/GeoLite2-ASN-Test.mmdb", asn);

// Plain upstreams: the recording fixture would itself grow with every health probe.
const serve = (body: string) => {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(body) });
  return { url: `http://127.0.0.1:${s.port}`, stop: () => s.stop(true) };
};
const a = serve("A");
const b = serve("B");
const c = serve("C");

/** Two configs that differ in routes, upstreams, policies and health settings. */
function config(variant: number): Record<string, any> {
  const even = variant % 2 === 0;
  return {
    admin: { listen: "127.0.0.1:0" },
    telemetry: { accessLog: false, logLevel: "error" },
    proxy: {
      listen: "127.0.0.1:0",
      limits: { rps: even ? 10000 : 20000 },
      health: { intervalSec: even ? 5 : 7, timeoutSec: 1, path: "/" },
      policy: {
        rateLimit: { rps: even ? 5000 : 6000, key: "ip" },
        ipAcl: { denyCidrs: ["203.0.113.0/24"] },
      },
      routes: [
        {
          name: "main",
          upstreams: even ? [a.url, b.url] : [b.url, c.url],
          lb: { algorithm: even ? "maglev" : "least_request", maglevTableSize: 307 },
          stickiness: { enabled: !even },
          policy: {
            rateLimit: { rps: 1000, key: "header:X-Key" },
            paths: [{ pathPrefix: "/p", rateLimit: { rps: even ? 100 : 200 } }],
            geoIp: { dbPath: geo, denyCountries: ["CN"] },
            asn: { dbPath: asn, denyAsn: [64512] },
          },
        },
        even
          ? { name: "extra-even", pathPrefix: "/even", upstreams: [c.url], auth: { basic: { username: "u", password: "p" } } }
          : { name: "extra-odd", pathPrefix: "/odd", upstreams: [a.url], retry: { maxRetries: 1 } },
      ],
    },
  };
}

const write = (i: number) => writeFileSync(file, JSON.stringify(config(i)));
write(0);
const h = await startHecate(config(0), { configPath: file });

afterAll(async () => {
  await h.shutdown();
  a.stop();
  b.stop();
  c.stop();
  rmSync(dir, { recursive: true, force: true });
});

function timers(): number {
  Bun.gc(true);
  return heapStats().objectTypeCounts.Timeout ?? 0;
}
/**
 * Descriptors of this process: sockets, and everything else (files, database handles, pipes,
 * eventfds). Sockets are counted apart: keep-alive connections (Hecate's pools to a/b/c and its
 * health checks, this test's fetch client to Hecate — each seen twice here, both ends live in
 * this process) come and go with traffic and timing; fresh-clone CI runs saw +5 and +6 of them.
 */
function fds(): { sockets: number; other: number } {
  let sockets = 0;
  let other = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    let to = "";
    try {
      to = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (the readdir's own descriptor)
    }
    if (to.startsWith("socket:")) sockets++;
    else other++;
  }
  return { sockets, other };
}
/** fd → what it points at (socket:[inode], pipe:[…], a path), to name new descriptors. */
function fdTargets(): Map<string, string> {
  const m = new Map<string, string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      m.set(fd, readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return m;
}

async function reloads(from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    write(i);
    const r = await reload(h.rt, "test");
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    if (i % 100 === 0) {
      // some traffic on each kind of generation
      const res = await fetch(h.url + "/p/x", { headers: { "x-key": String(i) } });
      expect(res.status).toBe(200);
      await res.text();
    }
  }
}

test("1,000 reloads: no timer, descriptor, registry or memory growth", async () => {
  // warm up: JIT, pools, lazily created module state
  await reloads(0, 200);
  const t0 = timers();
  const f0 = fds();
  const targets0 = fdTargets();
  const states0 = h.rt.registry.byUrl.size;
  const breakers0 = h.rt.registry.breakers.size;
  const rss0 = process.memoryUsage().rss;
  const heap0 = heapStats().heapSize; // after the full GC in timers()
  const gen0 = h.rt.gen.id;

  await reloads(200, 1000);

  expect(h.rt.gen.id).toBe(gen0 + 1000);
  const t1 = timers();
  const heap1 = heapStats().heapSize;
  const f1 = fds();
  const rss1 = process.memoryUsage().rss;
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`timers ${t0} → ${t1}, sockets ${f0.sockets} → ${f1.sockets}, other fds ${f0.other} → ${f1.other}, heap ${mib(heap0)} → ${mib(heap1)} MiB, rss ${mib(rss0)} → ${mib(rss1)} MiB`);
  if (f1.sockets > f0.sockets || f1.other > f0.other) {
    const added = [...fdTargets()].filter(([fd, to]) => targets0.get(fd) !== to).map(([fd, to]) => `${fd} → ${to}`);
    console.log(`new descriptors: ${added.join(", ")}`);
  }
  // the variant after 1,200 reloads is the same as after 200 (both even)
  expect(t1).toBeLessThanOrEqual(t0 + 2);
  expect(f1.other).toBeLessThanOrEqual(f0.other + 4);
  // a socket left behind by one generation in fifty would add 20 or more; pool churn stays under it
  expect(f1.sockets).toBeLessThanOrEqual(f0.sockets + 16);
  expect(h.rt.registry.byUrl.size).toBe(states0);
  expect(h.rt.registry.breakers.size).toBe(breakers0);
  // live objects after GC (JIT code still adds a few hundred KiB): a leak of 2 KiB per generation fails
  expect(heap1 - heap0).toBeLessThan(2 * 2 ** 20);
  expect(rss1 - rss0).toBeLessThan(96 * 2 ** 20);
  // still serving, nothing stuck in flight
  const res = await fetch(h.url + "/p/y");
  expect(res.status).toBe(200);
  await res.text();
  expect(h.rt.inflight).toBe(0);
}, 50_000);
