// Rate limits with two workers (SPEC §3.10): the `limits` bucket and keyed rate limits are
// one for the process, so a global rps 20 burst 20 admits ~20 + 20·T requests over T seconds
// in total — not twice that — whichever worker each request lands on.
import { test, expect, afterAll } from "bun:test";
import { startUpstream } from "../helpers/hecate.ts";
import { startWorkers, fresh, grew, type WorkersHecate } from "./workers-helpers.ts";

const up = startUpstream(() => new Response("ok"));
const running: WorkersHecate[] = [];
afterAll(async () => {
  for (const h of running) await h.stop();
  up.stop();
});

/** Hammer `url` from `parallel` loops (a new connection per request) for `ms`; statuses by key. */
async function hammer(url: string, ms: number, keys: string[] = [""], parallel = 8) {
  const admitted = new Map<string, number>(keys.map((k) => [k, 0]));
  let refused = 0;
  let sample: Response | null = null;
  const start = performance.now();
  let i = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() - start < ms) {
        const key = keys[i++ % keys.length]!;
        const r = await fresh(url, key ? { headers: { "x-key": key } } : {});
        await r.arrayBuffer();
        if (r.status === 200) admitted.set(key, admitted.get(key)! + 1);
        else if (r.status === 429) {
          refused++;
          sample ??= r;
        } else throw new Error(`unexpected status ${r.status}`);
      }
    }),
  );
  return { admitted, refused, sample: sample as Response | null, seconds: (performance.now() - start) / 1000 };
}

/** burst + rps·T, ±20% */
function expectAbout(admitted: number, rps: number, burst: number, seconds: number): void {
  const want = burst + rps * seconds;
  expect(admitted).toBeGreaterThanOrEqual(Math.floor(want * 0.8));
  expect(admitted).toBeLessThanOrEqual(Math.ceil(want * 1.2));
}

test("proxy.limits rps 20 burst 20 over ~2 s admits ~60 in total across two workers", async () => {
  const hx = await startWorkers({ proxy: { limits: { rps: 20, burst: 20 }, routes: [{ name: "r", upstreams: [up.url] }] } });
  running.push(hx);
  const before = await hx.perWorker();
  const r = await hammer(`${hx.url}/x`, 2000);
  const after = await hx.perWorker();
  expect(grew(before, after).sort()).toEqual([1, 2]);
  // both workers were asked many times more than the limit allows
  for (const id of [1, 2]) expect(after.get(id)! - before.get(id)!).toBeGreaterThan(100);
  expect(r.refused).toBeGreaterThan(100);
  expectAbout(r.admitted.get("")!, 20, 20, r.seconds);
  expect(r.sample!.headers.get("ratelimit-policy")).toBe('"limits";q=20;w=1');
  expect(Number(r.sample!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
});

test("a keyed rate limit (rps 10 burst 10 per X-Key) is one bucket per key across two workers", async () => {
  const hx = await startWorkers({
    proxy: { routes: [{ name: "k", upstreams: [up.url], policy: { rateLimit: { rps: 10, burst: 10, key: "header:X-Key" } } }] },
  });
  running.push(hx);
  const before = await hx.perWorker();
  const r = await hammer(`${hx.url}/x`, 2000, ["a", "b"]);
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  expect(r.refused).toBeGreaterThan(100);
  for (const key of ["a", "b"]) expectAbout(r.admitted.get(key)!, 10, 10, r.seconds);
  expect(r.sample!.headers.get("ratelimit-policy")).toBe('"k";q=10;w=1');
});
