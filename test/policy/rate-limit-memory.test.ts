// SPEC §3.9 / §6: memory stays bounded under many distinct rate-limit keys.
// A child process pushes 1,000,000 distinct keys (100,000 new keys per simulated second, i.e.
// 10 s of a flood) through the in-memory limiter and reports its RSS.
// Bound: RSS < 128 MiB after the flood, and never more than two refill periods' worth of keys
// held (2 × 100,000 here). For scale, the same run keeping every key (a plain Map) ends at
// ~195 MiB, so this test fails when eviction does not happen.
import { test, expect } from "bun:test";
import { join } from "node:path";

const BUN = process.execPath;
const FIXTURE = join(import.meta.dir, "fixtures", "limiter-flood.ts");
const RSS_BOUND = 128 * 1024 * 1024;

async function run(mode: string): Promise<{ keys: number; admitted: number; maxSize: number; rss: number }> {
  const p = Bun.spawn([BUN, FIXTURE, mode], { stdout: "pipe", stderr: "pipe", env: { ...process.env, KEYS: "1000000", RATE: "100000" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  return JSON.parse(out.trim());
}

test(
  "1,000,000 distinct keys: RSS < 128 MiB, at most two periods of keys held",
  async () => {
    const r = await run("evict");
    console.log(`limiter flood: ${r.keys} keys, max held ${r.maxSize}, RSS ${(r.rss / 1048576).toFixed(1)} MiB (bound 128 MiB)`);
    expect(r.keys).toBe(1_000_000);
    expect(r.admitted).toBe(1_000_000); // each key is new: its bucket starts full
    expect(r.maxSize).toBeLessThanOrEqual(200_000 + 1024);
    expect(r.rss).toBeLessThan(RSS_BOUND);
  },
  30_000,
);
