// The shared-memory state behind proxy.workers (src/policy/shared-store.ts,
// src/runtime/shared-state.ts): it behaves exactly like the single-thread classes, its table
// is bounded and evicts as documented, and two threads racing on one bucket or one breaker
// never spend a token twice or make a transition twice.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { createSharedRateTable, SharedRateTable, SharedRateLimiterStore, SET_WAYS } from "../../src/policy/shared-store.ts";
import { MemoryRateLimiterStore } from "../../src/policy/rate-limiter-store.ts";
import { rateSpec } from "../../src/policy/token-bucket.ts";
import { CircuitBreaker, type BreakerSettings } from "../../src/upstream/breaker.ts";
import { SharedState, createSharedBuffers } from "../../src/runtime/shared-state.ts";
import { UpstreamRegistry } from "../../src/upstream/registry.ts";
import { setLogLevel } from "../../src/observability/log.ts";

setLogLevel("error"); // the property tests open and close breakers thousands of times

test("the shared store answers exactly like the in-memory store (random keys, times, limits)", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0.5, max: 50, noNaN: true }),
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.tuple(fc.constantFrom("a", "b", "c", "10.0.0.1", "x".repeat(80)), fc.double({ min: 0, max: 400, noNaN: true })), { maxLength: 200 }),
      (rps, burst, ops) => {
        const spec = rateSpec(rps, burst);
        const mem = new MemoryRateLimiterStore(spec, { now: 0, timer: false });
        const shared = new SharedRateLimiterStore(new SharedRateTable(createSharedRateTable(64)), "rule r", spec);
        let now = 1;
        for (const [key, dt] of ops) {
          now += dt;
          expect(shared.take(key, now)).toEqual(mem.take(key, now));
        }
      },
    ),
    { numRuns: 300 },
  );
});

test("rules with the same key do not share buckets; the same rule id does (reload, other worker)", () => {
  const init = createSharedRateTable(64);
  const spec = rateSpec(1, 1);
  const r1 = new SharedRateLimiterStore(new SharedRateTable(init), "rule a 1 1 ip", spec);
  const r2 = new SharedRateLimiterStore(new SharedRateTable(init), "rule b 1 1 ip", spec);
  const r1again = new SharedRateLimiterStore(new SharedRateTable(init), "rule a 1 1 ip", spec);
  expect(r1.take("k", 10).ok).toBe(true);
  expect(r2.take("k", 10).ok).toBe(true);
  expect(r1again.take("k", 10)).toEqual({ ok: false, retryAfterSec: 1 });
});

test("the table is fixed in size: a full set evicts the bucket nearest to full, and counts it", () => {
  const table = new SharedRateTable(createSharedRateTable(1)); // one set: SET_WAYS buckets
  const store = new SharedRateLimiterStore(table, "rule r", rateSpec(1, 2));
  // SET_WAYS keys, each with a different amount spent (key i at time i: the later, the fuller)
  for (let i = 0; i < SET_WAYS; i++) expect(store.take(`k${i}`, 100 + i).ok).toBe(true);
  for (let i = 0; i < SET_WAYS; i++) expect(store.take(`k${i}`, 100 + i).ok).toBe(true); // burst 2: now empty
  expect(table.live(100 + SET_WAYS)).toBe(SET_WAYS);
  expect(table.evictions).toBe(0);
  // a new key: the set is full of non-full buckets → k0 (the one nearest to full) is evicted
  expect(store.take("new", 100 + SET_WAYS).ok).toBe(true);
  expect(table.evictions).toBe(1);
  expect(table.live(100 + SET_WAYS)).toBe(SET_WAYS);
  expect(store.take("k0", 100 + SET_WAYS).ok).toBe(true); // starts from a full bucket again (evicts another)
  expect(store.take("k7", 100 + SET_WAYS).ok).toBe(false); // still there, still empty
  // once buckets have refilled their slots are free again: no eviction needed
  expect(store.take("later", 100_000).ok).toBe(true);
  expect(table.evictions).toBe(2);
});

test("two threads racing on one shared bucket admit exactly its burst", async () => {
  // Repeated until both threads got tokens in the same round (they really raced): on a loaded
  // machine one thread may be descheduled for a whole round. Every round must add up exactly.
  let raced = false;
  for (let round = 0; round < 5 && !raced; round++) raced = await raceOnce();
  expect(raced).toBe(true);
});

async function raceOnce(): Promise<boolean> {
  const table = createSharedRateTable(64);
  const start = new Int32Array(new SharedArrayBuffer(4));
  const run = () =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(new URL("./workers-state-thread.ts", import.meta.url).href);
      w.onmessage = (e) => {
        resolve(e.data.ok);
        w.terminate();
      };
      w.onerror = (e) => reject(e);
      w.postMessage({ kind: "bucket", table, takes: 60_000, start });
    });
  const [x, y] = await Promise.all([run(), run()]);
  // burst 50000 at 0.001 rps: no refill during the test
  expect(x + y).toBe(50_000);
  return x > 0 && y > 0;
}

const SETTINGS: BreakerSettings = { enabled: true, openAfterConsecutiveFailures: 3, cooldownMs: 1000, halfOpenMaxRequests: 2 };

test("the shared breaker follows the rules of breaker.ts step by step (random operations)", () => {
  type Op = { op: "available" | "send" | "success" | "failure" | "abort"; dt: number; pick: number };
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ op: fc.constantFrom("available", "send", "success", "failure", "abort"), dt: fc.integer({ min: 0, max: 700 }), pick: fc.nat() }),
        { maxLength: 120 },
      ) as fc.Arbitrary<Op[]>,
      fc.boolean(),
      (ops, enabled) => {
        const settings = { ...SETTINGS, enabled };
        const plain = new CircuitBreaker("http://o:1", settings);
        const shared = new SharedState(createSharedBuffers(1, createSharedRateTable(1)), 0);
        const reg = new UpstreamRegistry();
        shared.attachRegistry(reg, "main");
        const sb = reg.get("http://o:1/", "http://o:1", settings).breaker;
        let now = 1_000_000;
        const trials: number[] = [];
        const log: string[] = [];
        const pb: string[] = [];
        plain.onChange = (_o, f, t) => pb.push(`${f}>${t}`);
        reg.onBreakerChange = (_o, f, t) => log.push(`${f}>${t}`);
        for (const o of ops) {
          now += o.dt;
          const trial = trials.length > 0 ? trials[o.pick % trials.length]! : 0;
          switch (o.op) {
            case "available":
              expect(sb.available(now)).toBe(plain.available(now));
              break;
            case "send": {
              const t = plain.onSend();
              expect(sb.onSend()).toBe(t);
              trials.push(t);
              break;
            }
            case "success":
              plain.onSuccess(trial);
              sb.onSuccess(trial);
              break;
            case "failure":
              plain.onFailure(trial, now);
              sb.onFailure(trial, now);
              break;
            case "abort":
              plain.onAbort(trial);
              sb.onAbort(trial);
              break;
          }
          expect([sb.state, sb.consecutiveFailures, sb.trialsInFlight, sb.trialSuccesses, sb.openedAt, sb.stateAt(now)]).toEqual([
            plain.state,
            plain.consecutiveFailures,
            plain.trialsInFlight,
            plain.trialSuccesses,
            plain.openedAt,
            plain.stateAt(now),
          ]);
        }
        expect(log).toEqual(pb);
      },
    ),
    { numRuns: 300 },
  );
});

test("two threads failing requests on one shared breaker open it exactly once", async () => {
  const buffers = createSharedBuffers(2, createSharedRateTable(1));
  const start = new Int32Array(new SharedArrayBuffer(4));
  const run = (id: number) =>
    new Promise<{ transitions: string[]; state: string }>((resolve, reject) => {
      const w = new Worker(new URL("./workers-state-thread.ts", import.meta.url).href);
      w.onmessage = (e) => {
        resolve(e.data);
        w.terminate();
      };
      w.onerror = (e) => reject(e);
      w.postMessage({ kind: "breaker", buffers, id, failures: 5000, start });
    });
  const [x, y] = await Promise.all([run(1), run(2)]);
  expect([...x.transitions, ...y.transitions]).toEqual(["closed>open"]);
  expect(x.state).toBe("open");
  expect(y.state).toBe("open");
});

test("a lock left held (its thread died inside the critical section) is taken over after 2 s", () => {
  const init = createSharedRateTable(1);
  new Int32Array(init.locks).fill(1); // held by nobody alive
  const store = new SharedRateLimiterStore(new SharedRateTable(init), "rule r", rateSpec(1, 1));
  const t0 = performance.now();
  expect(store.take("k", 10).ok).toBe(true);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(2000);
  // and it was released again
  expect(store.take("k", 10).ok).toBe(false);
});
