// Token buckets in shared memory, for several worker threads of one process (SPEC §3.10: with
// `workers > 1` a global 100 rps admits ~100 rps in total, not per worker).
//
// One table per process, created by the main thread and handed to every worker: a
// set-associative hash table in a SharedArrayBuffer. A bucket is keyed by a 64-bit hash of
// (rule identity, key value) and holds one number, its TAT (the time it is full again, see
// token-bucket.ts), as a float64 of milliseconds on the process-wide clock (the main thread's
// `performance.timeOrigin`; each thread converts its own `performance.now()`).
//
//   set s (SET_WAYS slots) = hash & (sets − 1); one spin lock per set (Int32 + Atomics)
//   slot: tag (two int32: the 64-bit hash) + TAT (float64)
//
// A take locks its set, looks for the tag among the set's slots, takes a token (or not) and
// unlocks: the whole read-modify-write is one critical section of a few dozen nanoseconds, so
// two workers never both spend the last token. (A lock-free compare-and-swap on a BigInt64
// time measured 2.4× slower here than lock + float64, because of BigInt arithmetic.)
//
// Memory is fixed: SET_WAYS × sets slots (default 2^20 slots, 16 MiB + 0.5 MiB of locks), shared
// by every rule. A slot whose TAT ≤ now holds a full bucket, which is indistinguishable from no
// bucket (SPEC §3.9), so it is free for any key: nothing is ever swept. When every slot of a set
// holds a bucket that is not full (more than SET_WAYS × sets keys refilling at once, or an
// unlucky set), the bucket nearest to full is evicted: that one key starts again from a full
// bucket (at most `burst` extra requests for it). Evictions are counted (`evictions`) and logged
// at most once a minute.
//
// Waiting for a lock: spin (the holder is inside a section of a few dozen nanoseconds), then,
// if the holder was descheduled, sleep in 0.1 ms `Atomics.wait` steps. A thread that dies while
// holding a lock (a worker is never terminated in the middle of a take, but a crash could in
// theory) would block its set: a waiter that has waited LOCK_STEAL_MS takes the lock over.
import { TAKE_OK, takeTat, retryAfterSec, type RateSpec, type TakeResult } from "./token-bucket.ts";
import type { RateLimiterStore } from "./rate-limiter-store.ts";
import { log } from "../observability/log.ts";

export const SET_WAYS = 8;
/** Default number of sets: 2^17 × 8 ways = 2^20 buckets. */
export const DEFAULT_SETS = 1 << 17;
const LOCK_SPINS = 2_000;
const LOCK_STEAL_MS = 2_000;

/**
 * Take the spin lock at `a[i]` (0 free, 1 held); release with `Atomics.store(a, i, 0)`. See the
 * file header for the waiting policy. `what` names the lock in the log line of a takeover.
 */
export function lockSlot(a: Int32Array, i: number, what: string): void {
  if (Atomics.compareExchange(a, i, 0, 1) === 0) return;
  for (let spins = 0; spins < LOCK_SPINS; spins++) if (Atomics.compareExchange(a, i, 0, 1) === 0) return;
  const deadline = performance.now() + LOCK_STEAL_MS;
  while (Atomics.compareExchange(a, i, 0, 1) !== 0) {
    if (performance.now() > deadline) {
      log("error", `${what}: a lock was held too long (a worker died holding it?); taking it over`, { slot: i });
      Atomics.store(a, i, 1);
      return;
    }
    Atomics.wait(a, i, 1, 0.1);
  }
}

/** The structured-cloneable description of a table (sent to workers). */
export interface SharedRateTableInit {
  readonly sets: number;
  readonly locks: SharedArrayBuffer;
  readonly tags: SharedArrayBuffer;
  readonly tats: SharedArrayBuffer;
  /** [0] evictions, [1] last eviction log (seconds since clock origin) */
  readonly stats: SharedArrayBuffer;
  /** `performance.timeOrigin` of the thread that created the table: the shared clock's zero. */
  readonly clockOrigin: number;
}

export function createSharedRateTable(sets = DEFAULT_SETS): SharedRateTableInit {
  if (sets < 1 || (sets & (sets - 1)) !== 0) throw new Error("sets must be a power of two");
  const slots = sets * SET_WAYS;
  return {
    sets,
    locks: new SharedArrayBuffer(sets * 4),
    tags: new SharedArrayBuffer(slots * 8),
    tats: new SharedArrayBuffer(slots * 8),
    stats: new SharedArrayBuffer(16),
    clockOrigin: performance.timeOrigin,
  };
}

/** FNV-1a-like 32-bit hash of a string, seeded (two different seeds give the 64-bit tag). */
function hash32(s: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h ^= h >>> 13;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/** A thread's view of the shared table. */
export class SharedRateTable {
  readonly sets: number;
  private readonly mask: number;
  private readonly locks: Int32Array;
  private readonly tags: Int32Array;
  private readonly tats: Float64Array;
  private readonly stats: Int32Array;
  /** Add to this thread's performance.now() to get the shared clock. */
  readonly offset: number;

  constructor(init: SharedRateTableInit) {
    this.sets = init.sets;
    this.mask = init.sets - 1;
    this.locks = new Int32Array(init.locks);
    this.tags = new Int32Array(init.tags);
    this.tats = new Float64Array(init.tats);
    this.stats = new Int32Array(init.stats);
    this.offset = performance.timeOrigin - init.clockOrigin;
  }

  get evictions(): number {
    return Atomics.load(this.stats, 0);
  }

  /** Buckets that are not full now (a scan of the whole table: tests and status only). */
  live(now: number): number {
    const t = now + this.offset;
    let n = 0;
    for (let i = 0; i < this.tats.length; i++) if (this.tats[i]! > t) n++;
    return n;
  }

  private lock(set: number): void {
    if (Atomics.compareExchange(this.locks, set, 0, 1) !== 0) lockSlot(this.locks, set, "rate limit");
  }

  /**
   * Take one token from the bucket tagged (h1, h2) at thread time `now`. Returns the TAT
   * before the take when refused (for Retry-After), or NaN when admitted.
   */
  take(h1: number, h2: number, now: number, spec: RateSpec): number {
    const t = now + this.offset;
    const set = (h1 ^ Math.imul(h2, 0x9e3779b1)) & this.mask;
    const base = set * SET_WAYS;
    const tags = this.tags;
    const tats = this.tats;
    this.lock(set);
    let slot = -1;
    let free = -1;
    let nearest = -1;
    for (let i = base; i < base + SET_WAYS; i++) {
      const tat = tats[i]!;
      if (tags[2 * i] === h1 && tags[2 * i + 1] === h2) {
        slot = i;
        break;
      }
      if (tat <= t) {
        if (free < 0) free = i;
      } else if (nearest < 0 || tat < tats[nearest]!) nearest = i;
    }
    let cur: number;
    if (slot >= 0) cur = tats[slot]!;
    else {
      if (free >= 0) slot = free;
      else {
        slot = nearest;
        this.evicted(t);
      }
      tags[2 * slot] = h1;
      tags[2 * slot + 1] = h2;
      cur = t; // a new bucket is full
      tats[slot] = t;
    }
    const next = takeTat(cur, t, spec);
    if (next === next) tats[slot] = next;
    Atomics.store(this.locks, set, 0);
    return next === next ? NaN : cur - this.offset;
  }

  private evicted(t: number): void {
    Atomics.add(this.stats, 0, 1);
    const sec = Math.floor(t / 1000);
    const last = Atomics.load(this.stats, 1);
    if (sec - last >= 60 && Atomics.compareExchange(this.stats, 1, last, sec) === last)
      log("warn", "rate limit: shared bucket table full, evicting the buckets nearest to full", {
        capacity: this.sets * SET_WAYS,
        evictions: Atomics.load(this.stats, 0),
      });
  }
}

/** One rule's buckets in the shared table (same interface as the in-memory store). */
export class SharedRateLimiterStore implements RateLimiterStore {
  private readonly seed1: number;
  private readonly seed2: number;

  /** `id`: the rule's identity (name and parameters); the same id in every worker = the same buckets. */
  constructor(
    readonly table: SharedRateTable,
    readonly id: string,
    readonly spec: RateSpec,
  ) {
    this.seed1 = hash32(id, 0x2545f491);
    this.seed2 = hash32(id, 0x6c8e9cf5);
  }

  take(key: string, now: number): TakeResult {
    let h1 = hash32(key, this.seed1);
    const h2 = hash32(key, this.seed2);
    if (h1 === 0 && h2 === 0) h1 = 1; // (0, 0) is the tag of a never-used slot
    const tat = this.table.take(h1, h2, now, this.spec);
    if (tat !== tat) return TAKE_OK;
    return { ok: false, retryAfterSec: retryAfterSec(tat, now, this.spec) };
  }

  /** Buckets of every rule that are not full (the table is shared; a scan). */
  get size(): number {
    return this.table.live(performance.now());
  }

  /** Nothing to release: buckets expire by themselves. */
  close(): void {}
}

/**
 * Set in each worker thread when several serve (src/runtime/worker-entry.ts): rate-limit rules
 * and the `limits` bucket then keep their buckets in this table (rate-limit.ts asks here).
 */
export const sharedBuckets: { table: SharedRateTable | null } = { table: null };

/** The shared store of rule `id` when a shared table is in use, else null. */
export function sharedStoreFor(id: string, spec: RateSpec): RateLimiterStore | null {
  return sharedBuckets.table === null ? null : new SharedRateLimiterStore(sharedBuckets.table, id, spec);
}
