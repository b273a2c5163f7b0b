// Token bucket arithmetic (SPEC §3.9), kept as one number per bucket.
//
// A bucket of capacity `burst` refilled at `rps` tokens/s is stored as its TAT ("theoretical
// arrival time", the GCRA form): the time at which the bucket will be full again. With
// I = 1000/rps ms per token and τ = burst·I ms (time to refill from empty):
//   tokens(now)   = burst − max(0, TAT − now)/I
//   take a token  ⇔ max(TAT, now) + I − now ≤ τ,  then TAT := max(TAT, now) + I
//   full          ⇔ TAT ≤ now
// One float per key is what lets a million keys fit in little memory, and "full" is a single
// comparison, which is what eviction needs (a full bucket is indistinguishable from a new one).

export interface TakeResult {
  readonly ok: boolean;
  /** Whole seconds until a token is available (≥ 1) when !ok; 0 when ok. */
  readonly retryAfterSec: number;
}

/** The one result object for every admitted request (no allocation on the fast path). */
export const TAKE_OK: TakeResult = Object.freeze({ ok: true, retryAfterSec: 0 });

/** Absorbs float rounding of repeated `+ I` (e.g. rps 3: 3 × 333.33… vs τ = 1000). */
const EPS_MS = 1e-6;

export interface RateSpec {
  readonly rps: number;
  readonly burst: number;
  /** ms per token */
  readonly intervalMs: number;
  /** ms to refill from empty: burst · intervalMs */
  readonly capacityMs: number;
  /** `w` of RateLimit-Policy: ceil(burst / rps) seconds */
  readonly windowSec: number;
}

/** `burst` defaults to max(1, ceil(rps)) (SPEC §2.4). */
export function rateSpec(rps: number, burst?: number): RateSpec {
  const b = burst ?? Math.max(1, Math.ceil(rps));
  const intervalMs = 1000 / rps;
  return { rps, burst: b, intervalMs, capacityMs: b * intervalMs, windowSec: Math.ceil(b / rps) };
}

/**
 * Take one token from a bucket whose TAT is `tat` (use −Infinity or any time ≤ now for a full
 * bucket). Returns the new TAT when admitted, or NaN when not.
 */
export function takeTat(tat: number, now: number, s: RateSpec): number {
  const next = (tat > now ? tat : now) + s.intervalMs;
  return next - now <= s.capacityMs + EPS_MS ? next : NaN;
}

/** Whole seconds (≥ 1) until a bucket with this TAT holds a token again. */
export function retryAfterSec(tat: number, now: number, s: RateSpec): number {
  const waitMs = tat + s.intervalMs - s.capacityMs - now;
  const sec = Math.ceil(waitMs / 1000 - 1e-9);
  return sec < 1 ? 1 : sec;
}

/** A single bucket (the global `limits` bucket). */
export class TokenBucket {
  private tat = -Infinity;
  constructor(readonly spec: RateSpec) {}

  take(now: number): TakeResult {
    const next = takeTat(this.tat, now, this.spec);
    if (next === next) {
      this.tat = next;
      return TAKE_OK;
    }
    return { ok: false, retryAfterSec: retryAfterSec(this.tat, now, this.spec) };
  }

  /** Tokens available at `now` (for tests and status pages). */
  tokens(now: number): number {
    const deficit = this.tat > now ? (this.tat - now) / this.spec.intervalMs : 0;
    return this.spec.burst - deficit;
  }
}
