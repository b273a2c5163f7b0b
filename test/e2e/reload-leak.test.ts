// 1,000 reloads must not leak: the timers of old generations are released, file descriptors
// (database handles, sockets) do not pile up, the upstream registry keeps only what the live
// generation uses, and RSS stays bounded. Measured in a process of its own
// (reload-leak-child.ts): timers, descriptors, heap and RSS are process-wide, and the other
// test files' leftovers in the runner's process would move them too.
import { test, expect } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");

test("1,000 reloads: no timer, descriptor, registry or memory growth", async () => {
  const p = Bun.spawn([process.execPath, "test/e2e/reload-leak-child.ts"], { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  const r = JSON.parse(out.trim().split("\n").pop()!);
  const { t0, t1, f0, f1, heap0, heap1, rss0, rss1 } = r;
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`timers ${t0} → ${t1}, sockets ${f0.sockets} → ${f1.sockets}, other fds ${f0.other} → ${f1.other}, heap ${mib(heap0)} → ${mib(heap1)} MiB, rss ${mib(rss0)} → ${mib(rss1)} MiB`);
  if (r.added.length > 0) console.log(`new descriptors: ${r.added.join(", ")}`);
  expect(r.generations).toBe(1000);
  // the variant after 1,200 reloads is the same as after 200 (both even)
  expect(t1).toBeLessThanOrEqual(t0 + 2);
  expect(f1.other).toBeLessThanOrEqual(f0.other + 4);
  // a socket left behind by one generation in fifty would add 20 or more; pool churn stays under it
  expect(f1.sockets).toBeLessThanOrEqual(f0.sockets + 16);
  expect(r.states1).toBe(r.states0);
  expect(r.breakers1).toBe(r.breakers0);
  // live objects after GC (JIT code still adds a few hundred KiB): a leak of 2 KiB per generation fails
  expect(heap1 - heap0).toBeLessThan(2 * 2 ** 20);
  expect(rss1 - rss0).toBeLessThan(96 * 2 ** 20);
  // still serving, nothing stuck in flight
  expect(r.status).toBe(200);
  expect(r.inflight).toBe(0);
}, 50_000);
