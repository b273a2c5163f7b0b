// State that must be one for the whole process when several worker threads serve (SPEC §3.10):
// drain flag, config generation, per-upstream health, per-origin circuit breakers, counters.
// It lives in SharedArrayBuffers created by the main thread and handed to every worker; each
// thread wraps them in a `SharedState`. With `workers: 1` none of this exists: the plain
// classes of registry.ts / breaker.ts and the Runtime's own fields are used.
//
// Who writes what:
// - drain flag: the main thread (admin, shutdown); every worker reads it per request.
// - healthy: the main thread's health checker (it is the only prober); workers read it.
// - breakers: every worker, through the same lock-protected slot, so a breaker opened by
//   failures seen in one worker is open in all (and each transition is made — and logged —
//   by exactly one thread).
// - counters: each worker publishes its own in-flight / request counts (and per-upstream
//   in-flight) every PUBLISH_MS into its own slots; the main thread sums them for the admin
//   API, /metrics and the shutdown wait. The request path keeps plain local counters.
//
// Slots: the main thread gives every upstream URL and origin a slot index when its compile
// first meets it, and sends the maps with each generation. Slots are never reused for another
// URL (capacity URL_SLOTS / ORIGIN_SLOTS per process; past that, a URL gets thread-local state
// and a warning is logged).
import { CircuitBreaker, type BreakerSettings, type BreakerListener, type BreakerState } from "../upstream/breaker.ts";
import { UpstreamState, type UpstreamRegistry } from "../upstream/registry.ts";
import type { Runtime } from "./runtime.ts";
import { lockSlot, type SharedRateTableInit } from "../policy/shared-store.ts";
import { log } from "../observability/log.ts";

export const URL_SLOTS = 4096;
export const ORIGIN_SLOTS = 4096;
/** How often a worker publishes its counters (ms). */
export const PUBLISH_MS = 100;

/** Control words (Int32). */
const C_DRAINING = 0;
const C_GENERATION = 1;

/** Breaker slot fields (Int32 × BR_FIELDS per origin); openedAt is a float64 beside it. */
const BR_FIELDS = 8;
const BR_LOCK = 0;
const BR_STATE = 1;
const BR_FAILURES = 2;
const BR_TRIALS = 3;
const BR_SUCCESSES = 4;
const BR_PERIOD = 5;
const CLOSED = 0;
const HALF_OPEN = 1;
const OPEN = 2;
const STATE_NAMES: readonly BreakerState[] = ["closed", "half-open", "open"];

/** Per worker: [inflight, requests] (float64). */
const W_FIELDS = 2;

/** What the main thread hands to each worker (structured-cloneable). */
export interface SharedBuffers {
  /** Serving workers (ids 1..workers; 0 is the main thread). */
  readonly workers: number;
  readonly control: SharedArrayBuffer;
  readonly counters: SharedArrayBuffer;
  /** Int32 per URL slot: 0 healthy, 1 ejected. */
  readonly ejected: SharedArrayBuffer;
  /** Float64 per (worker, URL slot): that worker's in-flight requests to the URL. */
  readonly upstreamInflight: SharedArrayBuffer;
  readonly breakers: SharedArrayBuffer;
  readonly breakerOpenedAt: SharedArrayBuffer;
  readonly rateTable: SharedRateTableInit;
}

export function createSharedBuffers(workers: number, rateTable: SharedRateTableInit): SharedBuffers {
  return {
    workers,
    control: new SharedArrayBuffer(16 * 4),
    counters: new SharedArrayBuffer((workers + 1) * W_FIELDS * 8),
    ejected: new SharedArrayBuffer(URL_SLOTS * 4),
    upstreamInflight: new SharedArrayBuffer((workers + 1) * URL_SLOTS * 8),
    breakers: new SharedArrayBuffer(ORIGIN_SLOTS * BR_FIELDS * 4),
    breakerOpenedAt: new SharedArrayBuffer(ORIGIN_SLOTS * 8),
    rateTable,
  };
}

/** Slot maps sent with each generation: [url, slot] and [origin, slot]. */
export interface SlotMaps {
  urls: [string, number][];
  origins: [string, number][];
}

/** A breaker slot's lock (the waiting policy is lockSlot's, policy/shared-store.ts). */
function lock(a: Int32Array, i: number): void {
  if (Atomics.compareExchange(a, i, 0, 1) !== 0) lockSlot(a, i, "breaker");
}

function unlock(a: Int32Array, i: number): void {
  Atomics.store(a, i, 0);
}

/** One thread's view of the shared buffers. */
export class SharedState {
  readonly buffers: SharedBuffers;
  /** 0 = main thread, 1..workers = serving workers. */
  readonly worker: number;
  readonly control: Int32Array;
  readonly counters: Float64Array;
  readonly ejected: Int32Array;
  readonly upstreamInflight: Float64Array;
  readonly breakers: Int32Array;
  readonly openedAt: Float64Array;
  /** url/origin → slot, as last sent by the main thread (or allocated here on the main thread). */
  readonly urlSlots = new Map<string, number>();
  readonly originSlots = new Map<string, number>();

  constructor(buffers: SharedBuffers, worker: number) {
    this.buffers = buffers;
    this.worker = worker;
    this.control = new Int32Array(buffers.control);
    this.counters = new Float64Array(buffers.counters);
    this.ejected = new Int32Array(buffers.ejected);
    this.upstreamInflight = new Float64Array(buffers.upstreamInflight);
    this.breakers = new Int32Array(buffers.breakers);
    this.openedAt = new Float64Array(buffers.breakerOpenedAt);
  }

  get draining(): boolean {
    return this.control[C_DRAINING] !== 0;
  }
  set draining(on: boolean) {
    Atomics.store(this.control, C_DRAINING, on ? 1 : 0);
  }
  get generation(): number {
    return Atomics.load(this.control, C_GENERATION);
  }
  set generation(id: number) {
    Atomics.store(this.control, C_GENERATION, id);
  }

  // --- slots (allocated by the main thread) ------------------------------------------------

  slotMaps(): SlotMaps {
    return { urls: [...this.urlSlots], origins: [...this.originSlots] };
  }

  /** Worker side: adopt the maps of a new generation. */
  setSlotMaps(m: SlotMaps): void {
    for (const [u, s] of m.urls) this.urlSlots.set(u, s);
    for (const [o, s] of m.origins) this.originSlots.set(o, s);
  }

  /** Main thread: the slot of `url` (allocating one); -1 when the table is full. */
  allocUrl(url: string): number {
    let s = this.urlSlots.get(url);
    if (s === undefined) {
      if (this.urlSlots.size >= URL_SLOTS) return -1;
      s = this.urlSlots.size;
      this.urlSlots.set(url, s);
    }
    return s;
  }

  allocOrigin(origin: string): number {
    let s = this.originSlots.get(origin);
    if (s === undefined) {
      if (this.originSlots.size >= ORIGIN_SLOTS) return -1;
      s = this.originSlots.size;
      this.originSlots.set(origin, s);
    }
    return s;
  }

  // --- counters ------------------------------------------------------------------------------

  /** Worker: publish this worker's counters (called every PUBLISH_MS and at the end). */
  publish(rt: Runtime): void {
    const w = this.worker;
    this.counters[w * W_FIELDS] = rt.inflight;
    this.counters[w * W_FIELDS + 1] = rt.requests;
    const base = w * URL_SLOTS;
    for (const s of rt.registry.byUrl.values()) if (s instanceof SharedUpstreamState) this.upstreamInflight[base + s.slot] = s.inflight;
  }

  /** Requests counted by workers that have since died (main thread; keeps `requests` monotonic). */
  retiredRequests = 0;

  /** Main thread: a worker is gone, and its in-flight requests with it; its request count is kept. */
  clearWorker(w: number): void {
    this.retiredRequests += this.counters[w * W_FIELDS + 1]!;
    this.counters[w * W_FIELDS] = 0;
    this.counters[w * W_FIELDS + 1] = 0;
    this.upstreamInflight.fill(0, w * URL_SLOTS, (w + 1) * URL_SLOTS);
  }

  workerInflight(w: number): number {
    return this.counters[w * W_FIELDS]!;
  }
  workerRequests(w: number): number {
    return this.counters[w * W_FIELDS + 1]!;
  }

  totalInflight(): number {
    let n = 0;
    for (let w = 1; w <= this.buffers.workers; w++) n += this.counters[w * W_FIELDS]!;
    return n;
  }
  totalRequests(): number {
    let n = 0;
    for (let w = 1; w <= this.buffers.workers; w++) n += this.counters[w * W_FIELDS + 1]!;
    return n;
  }
  upstreamInflightTotal(slot: number): number {
    let n = 0;
    for (let w = 1; w <= this.buffers.workers; w++) n += this.upstreamInflight[w * URL_SLOTS + slot]!;
    return n;
  }

  /**
   * A worker died: trial requests it had in flight will never settle. Release every half-open
   * breaker's trial slots (a few extra trials at worst) so none stays stuck.
   */
  releaseTrials(): void {
    for (let s = 0; s < this.originSlots.size; s++) {
      const o = s * BR_FIELDS;
      lock(this.breakers, o + BR_LOCK);
      if (this.breakers[o + BR_STATE] === HALF_OPEN) this.breakers[o + BR_TRIALS] = 0;
      unlock(this.breakers, o + BR_LOCK);
    }
  }

  // --- runtime accessors ----------------------------------------------------------------------

  /** Main thread (serves no public traffic): drain, in-flight and request counts are the workers'. */
  attachControl(rt: Runtime): void {
    Object.defineProperty(rt, "draining", { configurable: true, enumerable: true, get: () => this.draining, set: (v: boolean) => (this.draining = v) });
    Object.defineProperty(rt, "inflight", { configurable: true, enumerable: true, get: () => this.totalInflight(), set: () => {} });
    Object.defineProperty(rt, "requests", { configurable: true, enumerable: true, get: () => this.retiredRequests + this.totalRequests(), set: () => {} });
  }

  /** Worker: the drain flag is the process's; in-flight and request counts stay local fields. */
  attachWorker(rt: Runtime): void {
    const control = this.control;
    Object.defineProperty(rt, "draining", {
      configurable: true,
      enumerable: true,
      get: () => control[C_DRAINING] !== 0,
      set: (v: boolean) => Atomics.store(control, C_DRAINING, v ? 1 : 0),
    });
  }

  /** Make `registry` create shared-memory breakers and upstream states. */
  attachRegistry(registry: UpstreamRegistry, role: "main" | "worker"): void {
    registry.factory = {
      breaker: (origin, settings, onChange) => {
        const slot = role === "main" ? this.allocOrigin(origin) : (this.originSlots.get(origin) ?? -1);
        if (slot < 0) {
          log("warn", "workers: no shared breaker slot for this origin; its breaker is per worker", { upstream: origin });
          return new CircuitBreaker(origin, settings, onChange);
        }
        if (role === "main") this.resetBreaker(slot);
        return new SharedCircuitBreaker(origin, settings, onChange, this, slot);
      },
      state: (url, origin, breaker) => {
        const slot = role === "main" ? this.allocUrl(url) : (this.urlSlots.get(url) ?? -1);
        if (slot < 0) {
          log("warn", "workers: no shared state slot for this upstream; its health is per worker", { upstream: url });
          return new UpstreamState(url, origin, breaker);
        }
        // A URL that (re)appears starts healthy, as in a single process.
        if (role === "main") Atomics.store(this.ejected, slot, 0);
        return new SharedUpstreamState(url, origin, breaker, this, slot, role);
      },
    };
  }

  private resetBreaker(slot: number): void {
    const o = slot * BR_FIELDS;
    lock(this.breakers, o + BR_LOCK);
    this.breakers[o + BR_STATE] = CLOSED;
    this.breakers[o + BR_FAILURES] = 0;
    this.breakers[o + BR_TRIALS] = 0;
    this.breakers[o + BR_SUCCESSES] = 0;
    this.openedAt[slot] = 0;
    unlock(this.breakers, o + BR_LOCK);
  }
}

/**
 * An upstream URL's state whose `healthy` flag is the process's. On the main thread `inflight`
 * reads the sum of what the workers published; in a worker it is the worker's own count (the
 * least_request balancer compares local counts: each worker balances its own traffic).
 */
export class SharedUpstreamState extends UpstreamState {
  readonly slot: number;
  constructor(url: string, origin: string, breaker: CircuitBreaker, shared: SharedState, slot: number, role: "main" | "worker") {
    super(url, origin, breaker);
    this.slot = slot;
    const ejected = shared.ejected;
    Object.defineProperty(this, "healthy", {
      configurable: true,
      enumerable: true,
      get: () => ejected[slot] === 0,
      set: (v: boolean) => Atomics.store(ejected, slot, v ? 0 : 1),
    });
    if (role === "main")
      Object.defineProperty(this, "inflight", { configurable: true, enumerable: true, get: () => shared.upstreamInflightTotal(slot), set: () => {} });
  }
}

/**
 * The circuit breaker of breaker.ts with its state in a shared slot: same API and the same
 * rules, each decision taken under the slot's lock. The request path stays lock-free while the
 * breaker is closed and requests succeed (one read; the failure counter is reset only when it
 * is not already 0, so healthy traffic does not bounce the cache line between cores).
 */
export class SharedCircuitBreaker extends CircuitBreaker {
  private readonly cells: Int32Array;
  private readonly at: number;
  private readonly opened: Float64Array;
  private readonly slotIndex: number;

  constructor(origin: string, settings: BreakerSettings, onChange: BreakerListener | undefined, shared: SharedState, slot: number) {
    super(origin, settings, onChange);
    this.cells = shared.breakers;
    this.at = slot * BR_FIELDS;
    this.opened = shared.openedAt;
    this.slotIndex = slot;
    const c = this.cells;
    const at = this.at;
    const field = (name: string, i: number) =>
      Object.defineProperty(this, name, { configurable: true, enumerable: true, get: () => c[at + i], set: (v: number) => Atomics.store(c, at + i, v) });
    Object.defineProperty(this, "state", {
      configurable: true,
      enumerable: true,
      get: () => STATE_NAMES[c[at + BR_STATE]!],
      set: (v: BreakerState) => Atomics.store(c, at + BR_STATE, STATE_NAMES.indexOf(v)),
    });
    field("consecutiveFailures", BR_FAILURES);
    field("trialsInFlight", BR_TRIALS);
    field("trialSuccesses", BR_SUCCESSES);
    const opened = this.opened;
    Object.defineProperty(this, "openedAt", { configurable: true, enumerable: true, get: () => opened[slot], set: (v: number) => (opened[slot] = v) });
  }

  override available(now: number): boolean {
    const s = this.settings;
    if (!s.enabled) return true;
    const c = this.cells;
    const at = this.at;
    const st = c[at + BR_STATE];
    if (st === CLOSED) return true;
    if (st === OPEN) {
      if (now - this.opened[this.slotIndex]! < s.cooldownMs) return false;
      let moved = false;
      lock(c, at + BR_LOCK);
      if (c[at + BR_STATE] === OPEN && now - this.opened[this.slotIndex]! >= s.cooldownMs) {
        c[at + BR_PERIOD]!++;
        c[at + BR_TRIALS] = 0;
        c[at + BR_SUCCESSES] = 0;
        c[at + BR_STATE] = HALF_OPEN;
        moved = true;
      }
      unlock(c, at + BR_LOCK);
      if (moved) this.changed("open", "half-open");
      if (c[at + BR_STATE] === CLOSED) return true;
    }
    return c[at + BR_TRIALS]! < s.halfOpenMaxRequests;
  }

  override onSend(): number {
    const c = this.cells;
    const at = this.at;
    if (c[at + BR_STATE] !== HALF_OPEN || !this.settings.enabled) return 0;
    let trial = 0;
    lock(c, at + BR_LOCK);
    if (c[at + BR_STATE] === HALF_OPEN) {
      c[at + BR_TRIALS]!++;
      trial = c[at + BR_PERIOD]!;
    }
    unlock(c, at + BR_LOCK);
    return trial;
  }

  /** Under the lock: does `trial` belong to the half-open period in progress? Releases its slot. */
  private settleLocked(trial: number): boolean {
    const c = this.cells;
    const at = this.at;
    if (trial === 0 || trial !== c[at + BR_PERIOD] || c[at + BR_STATE] !== HALF_OPEN) return false;
    if (c[at + BR_TRIALS]! > 0) c[at + BR_TRIALS]!--;
    return true;
  }

  override onSuccess(trial: number): void {
    const c = this.cells;
    const at = this.at;
    if (trial === 0) {
      if (c[at + BR_FAILURES] !== 0) Atomics.store(c, at + BR_FAILURES, 0);
      return;
    }
    let closed = false;
    lock(c, at + BR_LOCK);
    const current = this.settleLocked(trial);
    c[at + BR_FAILURES] = 0;
    if (current && ++c[at + BR_SUCCESSES]! >= this.settings.halfOpenMaxRequests) {
      c[at + BR_STATE] = CLOSED;
      closed = true;
    }
    unlock(c, at + BR_LOCK);
    if (closed) this.changed("half-open", "closed");
  }

  override onFailure(trial: number, now: number): void {
    const c = this.cells;
    const at = this.at;
    const s = this.settings;
    if (trial === 0 && c[at + BR_STATE] === CLOSED && s.enabled) {
      // the common case needs no lock: count, and lock only to open
      if (Atomics.add(c, at + BR_FAILURES, 1) + 1 < s.openAfterConsecutiveFailures) return;
    } else if (trial === 0 && !s.enabled) return;
    let from = -1;
    lock(c, at + BR_LOCK);
    const current = this.settleLocked(trial);
    if (s.enabled) {
      const st = c[at + BR_STATE]!;
      if (st === HALF_OPEN) {
        if (current) from = this.openLocked(now);
      } else if (st === CLOSED) {
        if (trial !== 0) c[at + BR_FAILURES]!++;
        if (c[at + BR_FAILURES]! >= s.openAfterConsecutiveFailures) from = this.openLocked(now);
      }
    }
    unlock(c, at + BR_LOCK);
    if (from >= 0) this.changed(STATE_NAMES[from]!, "open");
  }

  override onAbort(trial: number): void {
    if (trial === 0) return;
    const c = this.cells;
    lock(c, this.at + BR_LOCK);
    this.settleLocked(trial);
    unlock(c, this.at + BR_LOCK);
  }

  override stateAt(now: number): BreakerState {
    const st = this.cells[this.at + BR_STATE]!;
    if (st === OPEN && this.settings.enabled && now - this.opened[this.slotIndex]! >= this.settings.cooldownMs) return "half-open";
    return STATE_NAMES[st]!;
  }

  /** Under the lock: open now; returns the state it was in. */
  private openLocked(now: number): number {
    const c = this.cells;
    const at = this.at;
    const from = c[at + BR_STATE]!;
    this.opened[this.slotIndex] = now;
    c[at + BR_FAILURES] = 0;
    c[at + BR_TRIALS] = 0;
    c[at + BR_SUCCESSES] = 0;
    c[at + BR_STATE] = OPEN;
    return from;
  }

  /** A transition this thread made (exactly one thread makes each): log it, tell the listener. */
  private changed(from: BreakerState, to: BreakerState): void {
    if (to === "open") log("warn", "breaker opened", { upstream: this.origin, from, cooldownSec: this.settings.cooldownMs / 1000 });
    else log("info", to === "closed" ? "breaker closed" : "breaker half-open", { upstream: this.origin, from });
    this.onChange?.(this.origin, from, to);
  }
}
