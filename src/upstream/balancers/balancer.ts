// One interface for every load-balancing algorithm (SPEC §3.3). A balancer is built per route
// at compile time; a reload builds a new one (round robin starts afresh).
import type { UpstreamTarget } from "../target.ts";

export interface PickContext {
  /** Hash key for consistent hashing (cookie, header or client IP); "" when not needed. */
  hashKey: string;
  now: number;
}

export interface Balancer {
  readonly algorithm: string;
  /**
   * Pick an available upstream, skipping those in `exclude` when any other is available
   * (retries prefer untried upstreams). Returns undefined when none is available.
   * `dryRun` (explain) must not advance any state.
   */
  pick(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, dryRun?: boolean): UpstreamTarget | undefined;
}

/** Does a retry have to skip this target? (only while some untried one is available) */
export function isExcluded(t: UpstreamTarget, exclude: readonly UpstreamTarget[] | null): boolean {
  return exclude !== null && exclude.includes(t);
}
