// One contract for every load-balancing algorithm (SPEC §3.3), run against each of them,
// then what is particular to each: the smooth weighted round-robin sequence, least request's
// power of two choices, and Maglev's spread and minimal disruption (property tests).
import { describe, test, expect } from "bun:test";
import fc from "fast-check";
import { buildBalancer, ALGORITHMS } from "../../src/upstream/balancers/index.ts";
import type { Balancer } from "../../src/upstream/balancers/balancer.ts";
import { MaglevBalancer } from "../../src/upstream/balancers/maglev.ts";
import { buildMaglevTable } from "../../src/upstream/balancers/maglev-table.ts";
import { UpstreamRegistry } from "../../src/upstream/registry.ts";
import { parseUpstreamUrl, stickyIdFor, type UpstreamTarget } from "../../src/upstream/target.ts";

const BREAKER = { enabled: true, openAfterConsecutiveFailures: 1, cooldownMs: 60_000, halfOpenMaxRequests: 1 };

function targets(specs: (string | { url: string; weight: number })[]): UpstreamTarget[] {
  const reg = new UpstreamRegistry();
  return specs.map((s, index) => {
    const url = typeof s === "string" ? s : s.url;
    const p = parseUpstreamUrl(url);
    return {
      url,
      origin: p.origin,
      https: p.https,
      hostname: p.hostname,
      port: p.port,
      basePath: p.basePath,
      weight: typeof s === "string" ? 1 : s.weight,
      stickyId: stickyIdFor("r", url),
      index,
      state: reg.get(url, p.origin, BREAKER),
    };
  });
}

function urls(n: number, base = 20000): string[] {
  return Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:${base + i}`);
}

/** A deterministic generator (mulberry32) for the random-based balancers. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const now = Date.now();
const DETERMINISTIC = new Set(["round_robin", "consistent_hash", "maglev"]);
const HASHED = new Set(["consistent_hash", "maglev"]);

function make(algo: string, ts: UpstreamTarget[], seed = 1): Balancer {
  return buildBalancer(algo, ts, 65537, seeded(seed));
}

/** The n-th pick context: hashed balancers get distinct keys so that every upstream is reached. */
const ctx = (i: number) => ({ hashKey: `key-${i}`, now });

for (const algo of ALGORITHMS) {
  describe(`balancer contract: ${algo}`, () => {
    test("picks only available upstreams and reaches every one of them", () => {
      const ts = targets(urls(4));
      const b = make(algo, ts);
      const hits = new Map<string, number>();
      for (let i = 0; i < 400; i++) {
        const t = b.pick(ctx(i), null)!;
        hits.set(t.url, (hits.get(t.url) ?? 0) + 1);
      }
      expect(hits.size).toBe(4);
      ts[1]!.state.healthy = false; // ejected by health checks
      ts[2]!.state.breaker.onFailure(0, now); // breaker open
      expect(ts[2]!.state.available(now)).toBe(false);
      const after = new Set<string>();
      for (let i = 0; i < 400; i++) after.add(b.pick(ctx(i), null)!.url);
      expect([...after].sort()).toEqual([ts[0]!.url, ts[3]!.url].sort());
    });

    test("no available upstream → undefined", () => {
      const ts = targets(urls(3));
      const b = make(algo, ts);
      for (const t of ts) t.state.healthy = false;
      expect(b.pick(ctx(0), null)).toBeUndefined();
      expect(b.pick(ctx(0), [ts[0]!])).toBeUndefined();
      expect(b.pick(ctx(0), null, true)).toBeUndefined();
    });

    test("a retry prefers an untried upstream; when all were tried it may repeat", () => {
      const ts = targets(urls(3));
      const b = make(algo, ts);
      for (let i = 0; i < 200; i++) {
        const first = b.pick(ctx(i), null)!;
        const second = b.pick(ctx(i), [first])!;
        expect(second).not.toBe(first);
        const third = b.pick(ctx(i), [first, second])!;
        expect([first, second]).not.toContain(third);
        const fourth = b.pick(ctx(i), [first, second, third]);
        expect(ts).toContain(fourth!);
      }
    });

    test("a retry skips tried upstreams among the available ones only", () => {
      const ts = targets(urls(3));
      const b = make(algo, ts);
      ts[2]!.state.healthy = false;
      for (let i = 0; i < 100; i++) {
        expect(b.pick(ctx(i), [ts[0]!])).toBe(ts[1]!);
        expect(b.pick(ctx(i), [ts[1]!])).toBe(ts[0]!);
      }
    });

    test("a single available upstream is always the answer", () => {
      const ts = targets(urls(5));
      const b = make(algo, ts);
      for (let i = 0; i < 5; i++) if (i !== 3) ts[i]!.state.healthy = false;
      for (let i = 0; i < 50; i++) expect(b.pick(ctx(i), null)).toBe(ts[3]!);
    });

    test("dryRun answers an available upstream and does not advance the sequence", () => {
      const ts = targets(urls(3));
      const plain = make(algo, ts, 7);
      const probed = make(algo, ts, 7);
      for (let i = 0; i < 60; i++) {
        const dry = probed.pick(ctx(i), null, true)!;
        expect(dry.state.available(now)).toBe(true);
        if (DETERMINISTIC.has(algo)) {
          // the dry answer is what the real pick then does, and the sequence is unchanged
          const real = probed.pick(ctx(i), null)!;
          expect(real).toBe(dry);
          expect(real).toBe(plain.pick(ctx(i), null)!);
        }
      }
    });

    test("weights shift the share of picks (or of keys) toward the heavier upstream", () => {
      const ts = targets([{ url: "http://10.0.0.1:1", weight: 3 }, { url: "http://10.0.0.2:2", weight: 1 }]);
      const b = make(algo, ts);
      let heavy = 0;
      const n = 8000;
      for (let i = 0; i < n; i++) if (b.pick(ctx(i), null) === ts[0]) heavy++;
      // least_request compares in-flight counts (all 0 here), so it follows the weighted draws
      expect(heavy / n).toBeGreaterThan(0.7);
      expect(heavy / n).toBeLessThan(0.8);
    });

    if (HASHED.has(algo)) {
      test("the same key always lands on the same upstream", () => {
        const ts = targets(urls(5));
        const b = make(algo, ts);
        for (let i = 0; i < 300; i++) expect(b.pick(ctx(i), null)).toBe(b.pick(ctx(i), null)!);
        // and a second balancer over the same URLs (another instance, a restart) agrees
        const other = make(algo, targets(urls(5)));
        for (let i = 0; i < 300; i++) expect(other.pick(ctx(i), null)!.url).toBe(b.pick(ctx(i), null)!.url);
      });
    }
  });
}

describe("round_robin (smooth weighted)", () => {
  test("nginx's sequence for weights 5, 1, 1", () => {
    const ts = targets([
      { url: "http://a:1", weight: 5 },
      { url: "http://b:1", weight: 1 },
      { url: "http://c:1", weight: 1 },
    ]);
    const b = make("round_robin", ts);
    const seq = Array.from({ length: 14 }, () => b.pick(ctx(0), null)!.url.slice(7, 8)).join("");
    expect(seq).toBe("aabacaaaabacaa");
  });

  test("equal weights rotate and the first pick is the first upstream", () => {
    const ts = targets(urls(3));
    const b = make("round_robin", ts);
    expect(Array.from({ length: 6 }, () => b.pick(ctx(0), null)!.index)).toEqual([0, 1, 2, 0, 1, 2]);
  });
});

describe("least_request (power of two choices)", () => {
  test("of the two drawn, the one with fewer in-flight requests wins", () => {
    const ts = targets(urls(2));
    const b = make("least_request", ts);
    ts[0]!.state.inflight = 5;
    ts[1]!.state.inflight = 2;
    for (let i = 0; i < 50; i++) expect(b.pick(ctx(i), null)).toBe(ts[1]!);
  });

  test("ties go to the first drawn", () => {
    const ts = targets(urls(2));
    // draws: 0.1 → first = ts[0]; then the only other one
    const b = buildBalancer("least_request", ts, 65537, () => 0.1);
    expect(b.pick(ctx(0), null)).toBe(ts[0]!);
    const b2 = buildBalancer("least_request", ts, 65537, () => 0.9);
    expect(b2.pick(ctx(0), null)).toBe(ts[1]!);
  });

  test("the busiest of many is never picked (it always loses its pair)", () => {
    const ts = targets(urls(4));
    ts.forEach((t, i) => (t.state.inflight = i === 2 ? 100 : i));
    const b = make("least_request", ts, 3);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(b.pick(ctx(i), null)!.index);
    expect(seen.has(2)).toBe(false);
    expect(seen.has(0)).toBe(true);
  });
});

describe("maglev", () => {
  const keys = (n: number, salt: string) => Array.from({ length: n }, (_, i) => `${salt}-${i}`);

  test("property: 4 upstreams, 10,000 keys → each gets 25% ± 10% (relative)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60000 }), fc.string({ minLength: 1, maxLength: 8 }), (port, salt) => {
        const ts = targets(Array.from({ length: 4 }, (_, i) => `http://h${i}.example:${port + i}`));
        const b = make("maglev", ts);
        const count = [0, 0, 0, 0];
        for (const k of keys(10_000, salt)) count[b.pick({ hashKey: k, now }, null)!.index]!++;
        for (const c of count) {
          expect(c).toBeGreaterThanOrEqual(2250);
          expect(c).toBeLessThanOrEqual(2750);
        }
      }),
      { numRuns: 15 },
    );
  });

  test("property: ejecting one of 4 moves only its keys plus at most 5% of the others", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60000 }), fc.integer({ min: 0, max: 3 }), fc.string({ minLength: 1, maxLength: 8 }), (port, gone, salt) => {
        const ts = targets(Array.from({ length: 4 }, (_, i) => `http://10.1.0.${i}:${port + i}`));
        const b = make("maglev", ts);
        const ks = keys(10_000, salt);
        const before = ks.map((k) => b.pick({ hashKey: k, now }, null)!);
        ts[gone]!.state.healthy = false;
        const after = ks.map((k) => b.pick({ hashKey: k, now }, null)!);
        let others = 0;
        let movedOthers = 0;
        for (let i = 0; i < ks.length; i++) {
          expect(after[i]).not.toBe(ts[gone]!);
          if (before[i] === ts[gone]) continue;
          others++;
          if (after[i] !== before[i]) movedOthers++;
        }
        expect(movedOthers / others).toBeLessThanOrEqual(0.05);
        // and coming back restores every key where it was
        ts[gone]!.state.healthy = true;
        for (let i = 0; i < ks.length; i++) expect(b.pick({ hashKey: ks[i]!, now }, null)).toBe(before[i]!);
      }),
      { numRuns: 12 },
    );
  });

  test("tables are built lazily per availability set and cached, never per request", () => {
    const ts = targets(urls(4));
    const b = make("maglev", ts) as MaglevBalancer;
    for (let i = 0; i < 1000; i++) b.pick(ctx(i), null);
    expect(b.builds).toBe(1);
    ts[1]!.state.healthy = false;
    for (let i = 0; i < 1000; i++) b.pick(ctx(i), null);
    expect(b.builds).toBe(2);
    // flapping back and forth reuses both tables
    for (let k = 0; k < 5; k++) {
      ts[1]!.state.healthy = k % 2 === 0;
      for (let i = 0; i < 100; i++) b.pick(ctx(i), null);
    }
    expect(b.builds).toBe(2);
    // dry runs (explain) and retries build nothing new either
    for (let i = 0; i < 100; i++) b.pick(ctx(i), [ts[0]!], true);
    expect(b.builds).toBe(2);
  });

  test("the table honours weights", () => {
    const t = buildMaglevTable(["a", "b", "c"], [2, 1, 1], 65537);
    const count = [0, 0, 0];
    for (const e of t) count[e]!++;
    expect(count[0]! / 65537).toBeCloseTo(0.5, 1);
    expect(count[1]! / 65537).toBeCloseTo(0.25, 1);
    expect(count[0]! + count[1]! + count[2]!).toBe(65537);
  });

  test("a small prime table size works and fills every slot", () => {
    const t = buildMaglevTable(["a", "b", "c", "d", "e"], [1, 1, 1, 1, 1], 503);
    const count = [0, 0, 0, 0, 0];
    for (const e of t) count[e]!++;
    for (const c of count) expect(Math.abs(c - 503 / 5)).toBeLessThanOrEqual(2);
  });

  test("a retried key walks to a stable untried upstream", () => {
    const ts = targets(urls(4));
    const b = make("maglev", ts);
    for (let i = 0; i < 200; i++) {
      const first = b.pick(ctx(i), null)!;
      const second = b.pick(ctx(i), [first])!;
      expect(second).not.toBe(first);
      expect(b.pick(ctx(i), [first])).toBe(second);
    }
  });
});
