// nginx's smooth weighted round robin: each pick adds every available upstream's weight to
// its current value, takes the highest (ties to the earlier in the file) and subtracts the
// total. Unavailable upstreams take no part. Equal weights → plain rotation, first pick = first.
import type { Balancer, PickContext } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";

export class RoundRobinBalancer implements Balancer {
  readonly algorithm = "round_robin";
  private readonly targets: readonly UpstreamTarget[];
  private readonly current: Float64Array;

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
    this.current = new Float64Array(targets.length);
  }

  pick(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, dryRun = false): UpstreamTarget | undefined {
    const r = this.pickFrom(ctx, exclude, dryRun);
    if (r !== undefined || exclude === null) return r;
    return this.pickFrom(ctx, null, dryRun); // every available one was tried: allow a repeat
  }

  private pickFrom(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, dryRun: boolean): UpstreamTarget | undefined {
    const ts = this.targets;
    const cur = dryRun ? Float64Array.from(this.current) : this.current;
    let best = -1;
    let total = 0;
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      if (!t.state.available(ctx.now) || (exclude !== null && exclude.includes(t))) continue;
      cur[i]! += t.weight;
      total += t.weight;
      if (best < 0 || cur[i]! > cur[best]!) best = i;
    }
    if (best < 0) return undefined;
    cur[best]! -= total;
    return ts[best];
  }
}
