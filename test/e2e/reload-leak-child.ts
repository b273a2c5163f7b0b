// The measured part of test/e2e/reload-leak.test.ts, run in a process of its own: timers,
// descriptors, heap and RSS are process-wide, and in the test runner's process the other test
// files' leftovers (their timers and keep-alive sockets winding down) move them too — a CI run
// once saw 12 → 15 timers there, against 7 → 7 for this file alone. Prints one JSON line with
// the figures; the test asserts on them.
//
// Timers are counted with `bun:jsc` heapStats().objectTypeCounts.Timeout after a full GC: a
// live setTimeout/setInterval is held by the event loop and so stays in that count, a
// cleared and unreferenced one is collected. (`process.getActiveResourcesInfo()` exists in
// Bun 1.4.5 but always answers [], so it cannot see a leak.)
import { copyFileSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { heapStats } from "bun:jsc";
import { startHecate } from "../helpers/hecate.ts";
import { reload } from "../../src/runtime/reload.ts";
import { healthCheckerOf } from "../../src/upstream/health.ts";

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
      if (res.status !== 200) throw new Error(`status ${res.status} after reload ${i}`);
      await res.text();
    }
  }
}

// warm up: JIT, pools, lazily created module state
await reloads(0, 200);
// A health probe in flight holds a timeout timer and a connection: take both counts between
// probes (a CI run once counted three probes in flight at t1 and none at t0: timers +3).
await healthCheckerOf(h.rt)!.settled();
const t0 = timers();
const f0 = fds();
const targets0 = fdTargets();
const states0 = h.rt.registry.byUrl.size;
const breakers0 = h.rt.registry.breakers.size;
const rss0 = process.memoryUsage().rss;
const heap0 = heapStats().heapSize; // after the full GC in timers()
const gen0 = h.rt.gen.id;

await reloads(200, 1000);
await healthCheckerOf(h.rt)!.settled();

const t1 = timers();
const heap1 = heapStats().heapSize;
const f1 = fds();
const rss1 = process.memoryUsage().rss;
const added = f1.sockets > f0.sockets || f1.other > f0.other ? [...fdTargets()].filter(([fd, to]) => targets0.get(fd) !== to).map(([fd, to]) => `${fd} → ${to}`) : [];
// still serving, nothing stuck in flight
const res = await fetch(h.url + "/p/y");
const status = res.status;
await res.text();
console.log(
  JSON.stringify({
    generations: h.rt.gen.id - gen0,
    t0, t1, f0, f1, added,
    states0, states1: h.rt.registry.byUrl.size,
    breakers0, breakers1: h.rt.registry.breakers.size,
    heap0, heap1, rss0, rss1, status, inflight: h.rt.inflight,
  }),
);
await h.shutdown();
a.stop();
b.stop();
c.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
