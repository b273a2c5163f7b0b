// Weighted random: each pick draws one available upstream with probability proportional to
// its weight. No state, so `dryRun` changes nothing.
import type { Balancer, PickContext } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";
import { Candidates } from "./candidates.ts";

export class RandomBalancer implements Balancer {
  readonly algorithm = "random";
  private readonly cands: Candidates;
  private readonly rng: () => number;

  constructor(targets: readonly UpstreamTarget[], rng: () => number = Math.random) {
    this.cands = new Candidates(targets);
    this.rng = rng;
  }

  pick(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, _dryRun = false): UpstreamTarget | undefined {
    const c = this.cands;
    if (c.collect(ctx.now, exclude) === 0) return undefined;
    return c.targets[c.idx[c.draw(this.rng, -1)]!];
  }
}
