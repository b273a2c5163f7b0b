// Balancer factory: one place that maps `lb.algorithm` to an implementation.
import type { Balancer } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";
import { RoundRobinBalancer } from "./round-robin.ts";
import { LeastRequestBalancer } from "./least-request.ts";
import { RandomBalancer } from "./random.ts";
import { MaglevBalancer } from "./maglev.ts";

export const ALGORITHMS = ["round_robin", "least_request", "random", "consistent_hash", "maglev"] as const;

/**
 * Build the balancer of one route. `rng` replaces Math.random for the random-based ones
 * (tests); `consistent_hash` is Maglev too (SPEC §3.3).
 */
export function buildBalancer(algorithm: string, targets: readonly UpstreamTarget[], tableSize: number, rng?: () => number): Balancer {
  switch (algorithm) {
    case "least_request":
      return new LeastRequestBalancer(targets, rng);
    case "random":
      return new RandomBalancer(targets, rng);
    case "consistent_hash":
    case "maglev":
      return new MaglevBalancer(targets, tableSize);
    default:
      return new RoundRobinBalancer(targets);
  }
}
