// Keyed rate limits shared through Redis (SPEC §2.4 `store`, §3.10), against a real
// `redis-server` (Debian package redis-server; .ci/run installs it):
// - the Lua bucket script decides exactly like the memory store on explicit times, and idle
//   buckets expire out of Redis;
// - two Hecate instances on one store admit the configured rate together, not twice it; keys
//   are independent;
// - Redis killed: failOpen true admits (one "unavailable" log line, every decision counted in
//   hecate_ratelimit_store_errors_total), failOpen false refuses with 429 + Retry-After 1;
//   Redis back: decisions come back (one "recovered" line).
import { test, expect, afterAll, beforeAll } from "bun:test";
import { RedisClient } from "bun";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream, type Hecate } from "../helpers/hecate.ts";
import { waitFor } from "../helpers/faults.ts";
import { MemoryRateLimiterStore } from "../../src/policy/rate-limiter-store.ts";
import { rateSpec, type TakeResult } from "../../src/policy/token-bucket.ts";
import { acquireRedis, RedisRateLimiterStore, DECISION_TIMEOUT_MS } from "../../src/policy/redis-store.ts";

const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const MAIN = join(import.meta.dir, "../../src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "hecate-redis-rl-"));

// --- redis-server on a free port ------------------------------------------------------------
// Redis cannot listen on port 0 (0 disables TCP), so a port is taken from the kernel by
// listening on 0 and closing; if another process grabs it meanwhile, redis-server exits and we
// try another one.

let redis: ReturnType<typeof Bun.spawn> | null = null;
let port = 0;
let url = "";

async function pingable(): Promise<boolean> {
  const c = new RedisClient(url, { autoReconnect: false, enableOfflineQueue: false, connectionTimeout: 500 });
  try {
    await c.connect();
    return (await c.send("PING", [])) === "PONG";
  } catch {
    return false;
  } finally {
    c.close();
  }
}

async function startRedis(fixedPort?: number): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (fixedPort === undefined) {
      const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      port = l.port;
      l.stop(true);
    } else port = fixedPort;
    url = `redis://127.0.0.1:${port}`;
    const p = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
      stdout: "ignore",
      stderr: "ignore",
    });
    let exited = false;
    void p.exited.then(() => (exited = true));
    await waitFor(async () => exited || (await pingable()), 5000, "redis-server answering PING");
    if (!exited) {
      redis = p;
      return;
    }
  }
  throw new Error("could not start redis-server");
}

async function stopRedis(): Promise<void> {
  const p = redis;
  redis = null;
  if (p === null) return;
  p.kill("SIGKILL");
  await p.exited;
}

let admin: RedisClient;
const upstream = startUpstream(() => new Response("ok"));
const started: Hecate[] = [];
let proc: ReturnType<typeof Bun.spawn> | null = null;

beforeAll(async () => {
  await startRedis();
  admin = new RedisClient(url, { autoReconnect: true });
  await admin.connect();
});

afterAll(async () => {
  for (const h of started) await h.shutdown();
  if (proc !== null) {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  admin?.close();
  await stopRedis();
  upstream.stop();
  rmSync(dir, { recursive: true, force: true });
});

const RATE = { rps: 5, burst: 10, key: "header:X-Key" };
function config(failOpen: boolean, rateLimit: Record<string, unknown> = RATE) {
  return {
    proxy: {
      policy: { store: { redis: { url }, failOpen } },
      routes: [{ name: "r", upstreams: [upstream.url], policy: { rateLimit } }],
    },
  };
}
async function hecate(failOpen = true, rateLimit?: Record<string, unknown>): Promise<Hecate> {
  const h = await startHecate(config(failOpen, rateLimit));
  started.push(h);
  return h;
}
async function get(h: Hecate, key: string): Promise<Response> {
  const r = await fetch(`${h.url}/x`, { headers: { "x-key": key } });
  await r.arrayBuffer();
  return r;
}

// --- the script ------------------------------------------------------------------------------

test("the Lua script decides like the memory store on the same takes at explicit times", async () => {
  const { conn, release } = acquireRedis({}, url);
  try {
    // rates whose µs interval is exact, so both sides compute the very same numbers
    const specs = [rateSpec(5, 10), rateSpec(0.5, 1), rateSpec(1000, 50), rateSpec(8), rateSpec(2, 3)];
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
    let compared = 0;
    let refused = 0;
    for (const [si, spec] of specs.entries()) {
      const mem = new MemoryRateLimiterStore(spec, { now: 0, timer: false });
      const red = new RedisRateLimiterStore(conn, `unit${si}`, spec, true);
      // start times far in the "future" of the server clock do not matter: the script uses them only
      let t = 1_700_000_000_000 + si * 1e9;
      for (let i = 0; i < 300; i++) {
        // mostly bursts at one instant or tiny steps, sometimes a pause longer than a refill
        const step = rnd(10) < 6 ? 0 : rnd(10) < 8 ? rnd(Math.ceil(spec.intervalMs * 2)) : rnd(Math.ceil(spec.capacityMs * 2));
        t += step;
        const key = `k${rnd(3)}`;
        const a = mem.take(key, t - 1_700_000_000_000);
        const b = (await red.takeAt(key, t)) as TakeResult;
        expect({ i, spec: spec.rps, ok: b.ok, retryAfterSec: b.retryAfterSec }).toEqual({ i, spec: spec.rps, ok: a.ok, retryAfterSec: a.retryAfterSec });
        compared++;
        if (!a.ok) refused++;
      }
      mem.close();
    }
    expect(compared).toBe(1500);
    expect(refused).toBeGreaterThan(200); // the sequence exercises refusals, not only admissions

    // rps 3: burst takes at one instant add up to exactly τ (no float drift in µs integers)
    const three = new RedisRateLimiterStore(conn, "unit-three", rateSpec(3, 3), true);
    const at = 1_800_000_000_000;
    const got: boolean[] = [];
    for (let i = 0; i < 4; i++) got.push(((await three.takeAt("k", at)) as TakeResult).ok);
    expect(got).toEqual([true, true, true, false]);
    // I is 333333 µs: the next token comes 333.333 ms later (the memory store: 333.3333… ms)
    expect(((await three.takeAt("k", at + 333.332)) as TakeResult).ok).toBe(false);
    expect(((await three.takeAt("k", at + 333.333)) as TakeResult).ok).toBe(true);
  } finally {
    release();
  }
});

test("bucket keys carry the rule and key, expire when the bucket would be full, long keys are hashed", async () => {
  const { conn, release } = acquireRedis({}, url);
  try {
    const s = new RedisRateLimiterStore(conn, "exp:rule", rateSpec(5, 10), true);
    for (let i = 0; i < 10; i++) expect(((await s.take("who", 0)) as TakeResult).ok).toBe(true);
    expect(((await s.take("who", 0)) as TakeResult).ok).toBe(false);
    // empty bucket: full again in burst/rps = 2 s
    const ttl = (await admin.send("PTTL", ["hecate:rl:exp%3Arule:who"])) as number;
    expect(ttl).toBeGreaterThan(1500);
    expect(ttl).toBeLessThanOrEqual(2000);
    const long = "v".repeat(500);
    expect(((await s.take(long, 0)) as TakeResult).ok).toBe(true);
    const keys = (await admin.send("KEYS", ["hecate:rl:exp%3Arule:*"])) as string[];
    expect(keys.sort()).toEqual([s.keyOf(long), "hecate:rl:exp%3Arule:who"].sort());
    expect(s.keyOf(long).length).toBeLessThan(40);

    // many distinct keys of a fast rule: every bucket vanishes once it has refilled (in 2/4 s =
    // 500 ms: long enough for all 500 to be counted first on a loaded machine; at 10 ms, CI once
    // counted 462)
    const fast = new RedisRateLimiterStore(conn, "fast", rateSpec(4, 2), true);
    await Promise.all(Array.from({ length: 500 }, (_, i) => fast.take(`ip${i}`, 0)));
    expect(((await admin.send("KEYS", ["hecate:rl:fast:*"])) as string[]).length).toBe(500);
    await waitFor(async () => ((await admin.send("KEYS", ["hecate:rl:fast:*"])) as string[]).length === 0, 3000, "idle buckets to expire");
  } finally {
    release();
  }
});

// --- two instances ---------------------------------------------------------------------------

test("two instances on one store admit the configured rate together, not twice it", async () => {
  const a = await hecate();
  const b = await hecate();
  const both = [a, b];
  // 20 requests with one key, alternating between the instances
  const t0 = performance.now();
  const burst: Response[] = [];
  for (let i = 0; i < 20; i++) burst.push(await get(both[i % 2]!, "shared"));
  const t1 = performance.now();
  const admitted = burst.filter((r) => r.status === 200).length;
  // exactly the burst; a slow machine may let a refilled token through (one per 200 ms)
  expect(admitted).toBeGreaterThanOrEqual(10);
  expect(admitted).toBeLessThanOrEqual(10 + Math.floor((t1 - t0) / 200));
  expect(burst.filter((r) => r.status === 429).length).toBe(20 - admitted);
  // the first 10 pass (5 on each instance), then both refuse: neither kept a bucket of its own
  expect(burst.slice(0, 10).map((r) => r.status)).toEqual(Array(10).fill(200));
  expect(burst.filter((r, i) => i % 2 === 0 && r.status === 429).length).toBeGreaterThan(3);
  expect(burst.filter((r, i) => i % 2 === 1 && r.status === 429).length).toBeGreaterThan(3);
  const refused = burst.find((r) => r.status === 429)!;
  expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  expect(refused.headers.get("ratelimit-policy")).toBe('"r";q=10;w=2');

  // one second later about rps (5) more, shared again
  await Bun.sleep(1000);
  const t2 = performance.now();
  const later: Response[] = [];
  for (let i = 0; i < 10; i++) later.push(await get(both[i % 2]!, "shared"));
  const t3 = performance.now();
  const more = later.filter((r) => r.status === 200).length;
  expect(more).toBeGreaterThanOrEqual(Math.floor(((t2 - t1) / 1000) * 5));
  expect(more).toBeLessThanOrEqual(Math.ceil(((t3 - t0) / 1000) * 5));
  expect(more).toBeLessThanOrEqual(6);

  // another key is another bucket: its full burst, on both instances together
  const other: Response[] = [];
  for (let i = 0; i < 14; i++) other.push(await get(both[i % 2]!, "other"));
  expect(other.slice(0, 10).map((r) => r.status)).toEqual(Array(10).fill(200));
  expect(other.filter((r) => r.status === 200).length).toBeLessThan(14);
  const keys = ((await admin.send("KEYS", ["hecate:rl:r:*"])) as string[]).sort();
  expect(keys).toEqual(["hecate:rl:r:other", "hecate:rl:r:shared"]);
});

test("the limits bucket stays local; a reload with the same URL keeps the connection and the buckets", async () => {
  const cfgPath = join(dir, "reload.yaml");
  const cfg = (routes: string[]) => ({
    proxy: {
      limits: { rps: 100, burst: 100 },
      policy: { store: { redis: { url }, failOpen: true }, rateLimit: { rps: 1, burst: 3, key: "header:X-Key" } },
      routes: routes.map((name) => ({
        name,
        pathPrefix: name === "rl2" ? "/" : `/${name}`,
        upstreams: [upstream.url],
        policy: { paths: [{ pathPrefix: "/p", rateLimit: { rps: 1, burst: 1, key: "header:X-Key" } }] },
      })),
    },
    telemetry: { accessLog: false, logLevel: "warn" },
  });
  const clients = async () => ((await admin.send("CLIENT", ["LIST"])) as string).trim().split("\n").length;
  const before = await clients();
  writeFileSync(cfgPath, JSON.stringify(cfg(["rl2"])));
  const h = await startHecate(cfg(["rl2"]), { configPath: cfgPath });
  started.push(h);
  const statuses = async (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await get(h, "g")).status);
    return out;
  };
  expect(await statuses(4)).toEqual([200, 200, 200, 429]);
  expect(await admin.send("EXISTS", ["hecate:rl:global:g"])).toBe(1);
  expect(((await admin.send("KEYS", ["hecate:rl:limits*"])) as string[]).length).toBe(0);
  // a paths rule is a keyed rule too
  const p1 = await fetch(`${h.url}/p/1`, { headers: { "x-key": "pk" } });
  const p2 = await fetch(`${h.url}/p/2`, { headers: { "x-key": "pk" } });
  expect([p1.status, p2.status]).toEqual([200, 429]);
  expect(p2.headers.get("ratelimit-policy")).toBe('"rl2-path-0";q=1;w=1');
  expect(await admin.send("EXISTS", ["hecate:rl:rl2-path-0:pk"])).toBe(1);
  expect(await clients()).toBe(before + 1);
  writeFileSync(cfgPath, JSON.stringify(cfg(["rl2", "extra"])));
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
  // same connection (the old generation's dispose did not close it), same bucket: still empty
  expect(await statuses(1)).toEqual([429]);
  expect(await clients()).toBe(before + 1);
});

// --- outage --------------------------------------------------------------------------------

async function storeErrors(h: Hecate, result: string): Promise<number> {
  const text = await (await fetch(`${h.adminUrl}/metrics`)).text();
  const m = text.match(new RegExp(`^hecate_ratelimit_store_errors_total\\{result="${result}"\\} (\\d+)`, "m"));
  return m ? Number(m[1]) : NaN;
}

test("a frozen Redis (SIGSTOP) never holds a request longer than the decision timeout; SIGCONT brings decisions back", async () => {
  const h = await hecate(true, { rps: 1, burst: 1, key: "header:X-Key" });
  expect([(await get(h, "f")).status, (await get(h, "f")).status]).toEqual([200, 429]);
  const before = await storeErrors(h, "fail_open");
  process.kill(redis!.pid, "SIGSTOP");
  try {
    // the first decision waits for the timeout, the next ones are answered at once (failOpen)
    const t0 = performance.now();
    expect((await get(h, "f")).status).toBe(200);
    const first = performance.now() - t0;
    expect(first).toBeGreaterThanOrEqual(DECISION_TIMEOUT_MS - 5);
    expect(first).toBeLessThan(DECISION_TIMEOUT_MS + 400);
    const t1 = performance.now();
    for (let i = 0; i < 5; i++) expect((await get(h, "f")).status).toBe(200);
    expect(performance.now() - t1).toBeLessThan(DECISION_TIMEOUT_MS);
    expect((await storeErrors(h, "fail_open")) - before).toBe(6);
    // probes keep failing against the frozen server (each gives up after its own timeout)
    await Bun.sleep(1200);
    expect((await get(h, "f")).status).toBe(200);
  } finally {
    process.kill(redis!.pid, "SIGCONT");
  }
  await waitFor(async () => (await get(h, "f2")).status === 429, 5000, "decisions through Redis again");
});

test("Redis down: failOpen true admits (logged once, counted), false refuses with 429; Redis back: decisions return", async () => {
  // failOpen true: a real process, so its log lines can be read
  const file = join(dir, "open.yaml");
  writeFileSync(
    file,
    JSON.stringify({
      admin: { listen: "127.0.0.1:0" },
      proxy: { listen: "127.0.0.1:0", ...config(true, { rps: 1, burst: 1, key: "header:X-Key" }).proxy },
      telemetry: { accessLog: false, logLevel: "info" },
    }),
  );
  const p = Bun.spawn([BUN, MAIN, "-config", file], { stdout: "pipe", stderr: "pipe" });
  proc = p;
  const lines: Record<string, any>[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {}
      }
    }
  })();
  await waitFor(() => lines.filter((l) => l.msg === "listening").length >= 2, 10000, "listening lines");
  const addr = (name: string) => {
    const a = lines.find((l) => l.msg === "listening" && l.listener === name)!.address as string;
    return `http://127.0.0.1:${a.slice(a.lastIndexOf(":") + 1)}`;
  };
  const openBase = addr("public");
  const openAdmin = addr("admin");
  const openGet = async (key: string) => {
    const r = await fetch(`${openBase}/x`, { headers: { "x-key": key } });
    await r.arrayBuffer();
    return r.status;
  };
  const errorsTotal = (result: string) => storeErrors({ adminUrl: openAdmin } as Hecate, result);
  const count = (msg: string) => lines.filter((l) => l.msg === msg).length;

  // failOpen false: in process
  const closed = await hecate(false, { rps: 1, burst: 1, key: "header:X-Key" });

  // Redis up: both limit
  expect([await openGet("o"), await openGet("o")]).toEqual([200, 429]);
  expect([(await get(closed, "c")).status, (await get(closed, "c")).status]).toEqual([200, 429]);
  expect(await errorsTotal("fail_open")).toBe(0);

  const redisPort = port;
  await stopRedis();

  // failOpen true: every request passes, fast; one log line for the whole outage
  const t0 = performance.now();
  const open: number[] = [];
  for (let i = 0; i < 10; i++) open.push(await openGet("o"));
  expect(open).toEqual(Array(10).fill(200));
  expect(performance.now() - t0).toBeLessThan(10 * DECISION_TIMEOUT_MS + 1000);
  await waitFor(() => count("rate-limit store unavailable") === 1, 3000, "outage log line");
  expect(lines.find((l) => l.msg === "rate-limit store unavailable")).toMatchObject({ level: "warn", store: "redis", url, failOpen: true });
  expect(await errorsTotal("fail_open")).toBe(10);
  expect(await errorsTotal("fail_closed")).toBe(0);

  // failOpen false: refused with 429 and Retry-After 1, even for a fresh key
  for (const key of ["c", "fresh"]) {
    const r = await get(closed, key);
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("1");
    expect(r.headers.get("ratelimit")).toBe('"r";r=0;t=1');
  }

  // Redis back (same port, empty): decisions return on both
  await startRedis(redisPort);
  await waitFor(() => count("rate-limit store recovered") === 1, 5000, "recovery log line");
  expect([await openGet("o2"), await openGet("o2")]).toEqual([200, 429]);
  await waitFor(async () => (await get(closed, "c2")).status === 200, 5000, "failOpen=false instance admitting again");
  expect((await get(closed, "c2")).status).toBe(429);
  const rec = lines.find((l) => l.msg === "rate-limit store recovered")!;
  expect(rec).toMatchObject({ level: "info", store: "redis" });
  expect(rec.failedDecisions).toBe(10);
  expect(rec.downMs).toBeGreaterThan(0);
  expect(count("rate-limit store unavailable")).toBe(1);
  expect(await errorsTotal("fail_open")).toBe(10);
});
