// Token buckets, the in-memory keyed store with eviction, key extraction (SPEC §2.4, §3.9).
import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { rateSpec, TokenBucket, takeTat } from "../../src/policy/token-bucket.ts";
import { MemoryRateLimiterStore, acquireStore } from "../../src/policy/rate-limiter-store.ts";
import { cookieValue, keyFunction, policyHeaderOf } from "../../src/policy/rate-limit.ts";
import type { Exchange } from "../../src/pipeline/exchange.ts";

describe("rateSpec", () => {
  test("burst defaults to max(1, ceil(rps)); w = ceil(burst/rps)", () => {
    expect(rateSpec(10).burst).toBe(10);
    expect(rateSpec(2.5).burst).toBe(3);
    expect(rateSpec(0.2).burst).toBe(1);
    expect(rateSpec(0.2).windowSec).toBe(5);
    expect(rateSpec(3, 10).windowSec).toBe(4);
    expect(policyHeaderOf("r", rateSpec(0.5, 3))).toBe('"r";q=3;w=6');
  });
});

describe("TokenBucket", () => {
  test("starts full at burst, then refuses with Retry-After ≥ 1", () => {
    const b = new TokenBucket(rateSpec(1, 3));
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) expect(b.take(t).ok).toBe(true);
    const r = b.take(t);
    expect(r.ok).toBe(false);
    expect(r.retryAfterSec).toBe(1);
  });

  test("refills rps tokens per second, never above burst", () => {
    const b = new TokenBucket(rateSpec(2, 4));
    let t = 5000;
    for (let i = 0; i < 4; i++) expect(b.take(t).ok).toBe(true);
    expect(b.take(t).ok).toBe(false);
    t += 500; // one token
    expect(b.take(t).ok).toBe(true);
    expect(b.take(t).ok).toBe(false);
    t += 60_000; // long idle: full again, but only 4
    expect(b.tokens(t)).toBe(4);
    for (let i = 0; i < 4; i++) expect(b.take(t).ok).toBe(true);
    expect(b.take(t).ok).toBe(false);
  });

  test("fractional rps: Retry-After in whole seconds until one token", () => {
    const b = new TokenBucket(rateSpec(0.1, 2)); // one token per 10 s
    const t = 100;
    expect(b.take(t).ok).toBe(true);
    expect(b.take(t).ok).toBe(true);
    expect(b.take(t).retryAfterSec).toBe(10);
    expect(b.take(t + 2500).retryAfterSec).toBe(8); // 7.5 s left → 8
    expect(b.take(t + 9999).retryAfterSec).toBe(1);
    expect(b.take(t + 10_000).ok).toBe(true);
  });

  test("rps 3 × 3 tokens is exactly the burst (float rounding)", () => {
    const s = rateSpec(3, 3);
    let tat = -Infinity;
    for (let i = 0; i < 3; i++) {
      tat = takeTat(tat, 0, s);
      expect(Number.isNaN(tat)).toBe(false);
    }
    expect(Number.isNaN(takeTat(tat, 0, s))).toBe(true);
  });
});

// Reference token bucket in exact integer arithmetic (milli-tokens), no eviction at all.
class RefBuckets {
  private m = new Map<string, { units: number; last: number }>();
  constructor(
    private rps: number,
    private burst: number,
  ) {}
  take(key: string, now: number): { ok: boolean; retryAfterSec: number } {
    let b = this.m.get(key);
    if (!b) this.m.set(key, (b = { units: this.burst * 1000, last: now }));
    b.units = Math.min(this.burst * 1000, b.units + (now - b.last) * this.rps);
    b.last = now;
    if (b.units >= 1000) {
      b.units -= 1000;
      return { ok: true, retryAfterSec: 0 };
    }
    return { ok: false, retryAfterSec: Math.max(1, Math.ceil((1000 - b.units) / this.rps / 1000)) };
  }
}

describe("MemoryRateLimiterStore", () => {
  test("behaves exactly like a bucket that is never evicted (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4, 5, 10),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 2500 })), { minLength: 1, maxLength: 300 }),
        (rps, burst, steps) => {
          // period = the refill time itself: the tightest eviction the design allows
          const store = new MemoryRateLimiterStore(rateSpec(rps, burst), { timer: false, now: 0, minPeriodMs: 0 });
          const ref = new RefBuckets(rps, burst);
          let now = 0;
          for (const [k, dt] of steps) {
            now += dt;
            const key = `k${k}`;
            expect(store.take(key, now)).toEqual(ref.take(key, now));
          }
          store.close();
        },
      ),
      { numRuns: 500 },
    );
  });

  test("full buckets are dropped: memory bounded by the keys of two periods", () => {
    const store = new MemoryRateLimiterStore(rateSpec(10, 10), { timer: false, now: 0 }); // refill 1 s
    expect(store.periodMs).toBe(1000);
    let now = 0;
    let max = 0;
    for (let i = 0; i < 100_000; i++) {
      now += 0.1; // 10,000 new keys per second
      expect(store.take(`key-${i}`, now).ok).toBe(true);
      max = Math.max(max, store.size);
    }
    expect(max).toBeLessThanOrEqual(20_010);
    // after two idle periods nothing is held
    store.take("x", now + 2500);
    expect(store.size).toBe(1);
    store.close();
  });

  test("a key that is not full survives rotations", () => {
    const store = new MemoryRateLimiterStore(rateSpec(0.5, 2), { timer: false, now: 0 }); // refill from empty: 4 s
    expect(store.periodMs).toBe(4000);
    expect(store.take("a", 0).ok).toBe(true);
    expect(store.take("a", 0).ok).toBe(true);
    expect(store.take("a", 0).ok).toBe(false);
    expect(store.take("a", 3999).ok).toBe(true); // ~1 token back; bucket now nearly empty again
    store.take("other", 4001); // rotation: "a" moves to the older generation
    expect(store.take("a", 5000).ok).toBe(true); // 0.5 + 0.5 tokens… exactly one
    expect(store.take("a", 5000).ok).toBe(false); // ← true if "a" had been dropped as full
    store.take("other", 8001); // another rotation
    store.take("other", 12002); // and another: "a" untouched since 5000, full by 9000 → dropped
    expect(store.size).toBeLessThanOrEqual(2);
    expect(store.take("a", 12002).ok).toBe(true);
    store.close();
  });

  test("the idle timer rotates without traffic", async () => {
    const store = new MemoryRateLimiterStore(rateSpec(1000, 1), { minPeriodMs: 20 });
    store.take("a", performance.now());
    expect(store.size).toBe(1);
    const deadline = performance.now() + 5000;
    while (store.size > 0 && performance.now() < deadline) await Bun.sleep(10);
    expect(store.size).toBe(0);
    store.close();
  });

  test("very long keys are stored as a hash", () => {
    const store = new MemoryRateLimiterStore(rateSpec(1, 1), { timer: false, now: 0 });
    const long = "x".repeat(100_000);
    expect(store.take(long, 0).ok).toBe(true);
    expect(store.take(long, 0).ok).toBe(false);
    expect(store.take(long + "y", 0).ok).toBe(true);
    store.close();
  });

  test("acquireStore shares a store per owner and id until the last release", () => {
    const owner = {};
    let made = 0;
    const make = () => (made++, new MemoryRateLimiterStore(rateSpec(1, 1), { timer: false }));
    const a = acquireStore(owner, "r", make);
    const b = acquireStore(owner, "r", make); // next generation, same rule
    expect(b.store).toBe(a.store);
    const other = acquireStore({}, "r", make); // another runtime
    expect(other.store).not.toBe(a.store);
    a.release();
    a.release(); // idempotent
    const c = acquireStore(owner, "r", make);
    expect(c.store).toBe(b.store);
    b.release();
    c.release();
    const d = acquireStore(owner, "r", make);
    expect(d.store).not.toBe(a.store);
    expect(made).toBe(3);
    d.release();
    other.release();
  });
});

describe("keys", () => {
  test("cookieValue: case-sensitive names, separators, quotes", () => {
    expect(cookieValue("a=1; sid=abc; b=2", "sid")).toBe("abc");
    expect(cookieValue("sid=abc", "sid")).toBe("abc");
    expect(cookieValue("SID=upper; sid=lower", "sid")).toBe("lower");
    expect(cookieValue("SID=upper", "sid")).toBeNull();
    expect(cookieValue("xsid=1; sidx=2", "sid")).toBeNull();
    expect(cookieValue('sid="quoted"', "sid")).toBe("quoted");
    expect(cookieValue("a=1, sid=joined", "sid")).toBe("joined"); // several Cookie fields joined
    expect(cookieValue("sid=", "sid")).toBe("");
    expect(cookieValue(null, "sid")).toBeNull();
    expect(cookieValue(";;  ; sid=v;", "sid")).toBe("v");
  });

  const ex = (headers: Record<string, string>, clientIp = "198.51.100.1") => ({ req: new Request("http://x/", { headers }), clientIp }) as unknown as Exchange;

  test("ip / header (case-insensitive) / cookie (case-sensitive), falling back to the client IP", () => {
    expect(keyFunction("ip")(ex({ "x-api-key": "k" }))).toBe("198.51.100.1");
    const h = keyFunction("header:X-Api-Key");
    expect(h(ex({ "x-api-key": "k1" }))).toBe("k1");
    expect(h(ex({ "X-API-KEY": "k1" }))).toBe("k1");
    const fallback = h(ex({}));
    expect(fallback).toContain("198.51.100.1");
    expect(h(ex({ "x-api-key": "198.51.100.1" }))).not.toBe(fallback); // a header cannot take over an IP's bucket
    expect(h(ex({ "x-api-key": "" }))).toBe(fallback);
    const c = keyFunction("cookie:Session");
    expect(c(ex({ cookie: "Session=s1" }))).toBe("s1");
    expect(c(ex({ cookie: "session=s1" }))).toBe(fallback);
  });
});
