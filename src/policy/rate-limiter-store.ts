// Where keyed token buckets live (SPEC §3.9). The stage only knows `RateLimiterStore.take`, so
// a later store (SharedArrayBuffer across workers, Redis across instances, §3.10) can replace
// the in-memory one without touching the pipeline. `take` may then return a promise.
//
// Memory stays bounded under any number of distinct keys: buckets live in two generations of
// maps. Every `periodMs` (≥ the time a bucket needs to refill from empty) the older map is
// dropped and the current one becomes the older one; a key found in the older map moves to the
// current one. A dropped key was untouched for at least one full period, so its bucket had
// refilled to full — indistinguishable from a new bucket, hence nothing is lost by dropping it.
// Live keys are therefore at most those seen in the last two periods, and rotation is O(1)
// (no sweep over the keys). Rotation happens lazily on `take` and on an unref'd timer so that
// an idle proxy releases memory too.
import { TAKE_OK, takeTat, retryAfterSec, type RateSpec, type TakeResult } from "./token-bucket.ts";

export interface RateLimiterStore {
  /** Take one token from `key`'s bucket at time `now` (ms, performance.now() clock). */
  take(key: string, now: number): TakeResult | Promise<TakeResult>;
  /** Keys currently held (full buckets may or may not be counted). */
  readonly size: number;
  /** Release timers and connections. */
  close(): void;
}

/** Keys longer than this are replaced by a 64-bit hash, so a huge header value costs no memory. */
const MAX_KEY = 64;

export class MemoryRateLimiterStore implements RateLimiterStore {
  private cur = new Map<string, number>();
  private prev = new Map<string, number>();
  private rotateAt: number;
  readonly periodMs: number;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly spec: RateSpec,
    opts: { now?: number; timer?: boolean; minPeriodMs?: number } = {},
  ) {
    this.periodMs = Math.max(opts.minPeriodMs ?? 1000, spec.capacityMs);
    this.rotateAt = (opts.now ?? performance.now()) + this.periodMs;
    if (opts.timer !== false) {
      // Bound the idle-wakeup rate; a period longer than this still rotates on time via rotateAt.
      const every = Math.min(this.periodMs, 60_000);
      this.timer = setInterval(() => this.maybeRotate(performance.now()), every);
      this.timer.unref?.();
    }
  }

  get size(): number {
    return this.cur.size + this.prev.size;
  }

  take(key: string, now: number): TakeResult {
    if (now >= this.rotateAt) this.rotate(now);
    if (key.length > MAX_KEY) key = "#" + Bun.hash(key).toString(36);
    let tat = this.cur.get(key);
    if (tat === undefined) {
      const old = this.prev.get(key);
      if (old !== undefined) {
        this.prev.delete(key);
        if (old > now) {
          tat = old;
          this.cur.set(key, old); // not full: keep it alive whatever happens below
        }
      }
    }
    const next = takeTat(tat ?? now, now, this.spec);
    if (next === next) {
      this.cur.set(key, next);
      return TAKE_OK;
    }
    return { ok: false, retryAfterSec: retryAfterSec(tat!, now, this.spec) };
  }

  private maybeRotate(now: number): void {
    if (now >= this.rotateAt) this.rotate(now);
  }

  private rotate(now: number): void {
    // Two periods idle: both generations are full buckets.
    if (now >= this.rotateAt + this.periodMs) this.cur = new Map();
    this.prev = this.cur;
    this.cur = new Map();
    this.rotateAt = now + this.periodMs;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.cur = new Map();
    this.prev = new Map();
  }
}

// --- state that survives reloads ------------------------------------------------------
// SPEC §2.7: rate-limit state of keys that still exist is kept across a reload. Stores are held
// per runtime (`owner`, the object that outlives generations) and per rule identity (name and
// parameters: a changed rps/burst/key starts afresh). Each generation that uses a store holds a
// reference; the last release (old generation disposed, or a failed compile) closes it.

interface Held {
  store: RateLimiterStore;
  refs: number;
}

const byOwner = new WeakMap<object, Map<string, Held>>();
const FALLBACK_OWNER = {};

export function acquireStore(owner: object | undefined, id: string, make: () => RateLimiterStore): { store: RateLimiterStore; release: () => void } {
  const o = owner ?? FALLBACK_OWNER;
  let m = byOwner.get(o);
  if (!m) byOwner.set(o, (m = new Map()));
  let h = m.get(id);
  if (!h) m.set(id, (h = { store: make(), refs: 0 }));
  h.refs++;
  const held = h;
  const map = m;
  let released = false;
  return {
    store: h.store,
    release() {
      if (released) return;
      released = true;
      if (--held.refs === 0) {
        held.store.close();
        if (map.get(id) === held) map.delete(id);
      }
    },
  };
}
