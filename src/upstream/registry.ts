// State that outlives a config generation: per upstream URL (health, in-flight, last error)
// and per origin (circuit breaker). Compile gets-or-creates entries here; after a swap the
// entries no generation uses any more are dropped (Caddy `UsagePool`).
import { CircuitBreaker, type BreakerSettings, type BreakerListener } from "./breaker.ts";

export class UpstreamState {
  readonly url: string;
  readonly origin: string;
  healthy = true;
  consecutiveProbeFailures = 0;
  consecutiveProbeSuccesses = 0;
  inflight = 0;
  lastError = "";
  /** Ejection history for the status page: [time ms, "ejected" | "restored", reason]. */
  readonly history: [number, string, string][] = [];
  readonly breaker: CircuitBreaker;
  constructor(url: string, origin: string, breaker: CircuitBreaker) {
    this.url = url;
    this.origin = origin;
    this.breaker = breaker;
  }
  /** Eligible for a pick: healthy and its breaker lets a request through now. */
  available(now: number): boolean {
    return this.healthy && this.breaker.available(now);
  }
}

/**
 * Makes the breakers and states of a registry whose state is shared by several worker threads
 * (src/runtime/shared-state.ts); null = the plain classes (one thread).
 */
export interface RegistryFactory {
  breaker(origin: string, settings: BreakerSettings, onChange: BreakerListener): CircuitBreaker;
  state(url: string, origin: string, breaker: CircuitBreaker): UpstreamState;
}

export class UpstreamRegistry {
  readonly byUrl = new Map<string, UpstreamState>();
  readonly breakers = new Map<string, CircuitBreaker>();
  onBreakerChange: BreakerListener | undefined;
  factory: RegistryFactory | null = null;

  get(url: string, origin: string, settings: BreakerSettings): UpstreamState {
    let b = this.breakers.get(origin);
    if (!b) {
      const onChange: BreakerListener = (o, f, t) => this.onBreakerChange?.(o, f, t);
      b = this.factory !== null ? this.factory.breaker(origin, settings, onChange) : new CircuitBreaker(origin, settings, onChange);
      this.breakers.set(origin, b);
    } else b.settings = settings;
    let s = this.byUrl.get(url);
    if (!s) {
      s = this.factory !== null ? this.factory.state(url, origin, b) : new UpstreamState(url, origin, b);
      this.byUrl.set(url, s);
    }
    return s;
  }

  /** Drop the states no longer referenced by the live generation. */
  retain(urls: Set<string>): void {
    for (const url of this.byUrl.keys()) if (!urls.has(url)) this.byUrl.delete(url);
    const origins = new Set<string>();
    for (const s of this.byUrl.values()) origins.add(s.origin);
    for (const o of this.breakers.keys()) if (!origins.has(o)) this.breakers.delete(o);
  }
}
