// Balancer factory: one place that maps `lb.algorithm` to an implementation.
import type { Balancer } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";
import { RoundRobinBalancer } from "./round-robin.ts";

export function buildBalancer(algorithm: string, targets: readonly UpstreamTarget[], tableSize: number): Balancer {
  void tableSize;
  switch (algorithm) {
    default:
      return new RoundRobinBalancer(targets);
  }
}
