// Least request by the power of two choices (SPEC §3.3): draw two distinct available
// upstreams at random (weighted by `weight`), send to the one with fewer in-flight requests;
// a tie goes to the first drawn. Cheap (O(n) scan, no sort) and avoids the herd that "pick
// the global minimum" causes when many picks see the same counts.
import type { Balancer, PickContext } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";
import { Candidates } from "./candidates.ts";

export class LeastRequestBalancer implements Balancer {
  readonly algorithm = "least_request";
  private readonly cands: Candidates;
  private readonly rng: () => number;

  constructor(targets: readonly UpstreamTarget[], rng: () => number = Math.random) {
    this.cands = new Candidates(targets);
    this.rng = rng;
  }

  pick(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, _dryRun = false): UpstreamTarget | undefined {
    const c = this.cands;
    const n = c.collect(ctx.now, exclude);
    if (n === 0) return undefined;
    const a = c.draw(this.rng, -1);
    const first = c.targets[c.idx[a]!]!;
    if (n === 1) return first;
    const second = c.targets[c.idx[c.draw(this.rng, a)]!]!;
    return second.state.inflight < first.state.inflight ? second : first;
  }
}
