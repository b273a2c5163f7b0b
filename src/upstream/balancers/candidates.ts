// The available, not-yet-tried upstreams of one pick, collected into a scratch array owned by
// the balancer (picks are synchronous, so one scratch per balancer is safe and a pick
// allocates nothing), plus a weighted draw over them.
import type { UpstreamTarget } from "../target.ts";

export class Candidates {
  readonly targets: readonly UpstreamTarget[];
  /** Indexes into `targets` of the candidates of the current pick; `n` are valid. */
  readonly idx: Int32Array;
  n = 0;
  /** Sum of the candidates' weights. */
  total = 0;

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
    this.idx = new Int32Array(targets.length);
  }

  /**
   * Collect the available upstreams that are not in `exclude`; when every available one is
   * excluded (all were tried), collect the available ones again so a retry can repeat.
   * Returns the number collected.
   */
  collect(now: number, exclude: readonly UpstreamTarget[] | null): number {
    const ts = this.targets;
    let n = 0;
    let total = 0;
    let avail = 0;
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      if (!t.state.available(now)) continue;
      avail++;
      if (exclude !== null && exclude.includes(t)) continue;
      this.idx[n++] = i;
      total += t.weight;
    }
    if (n === 0 && avail > 0) {
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i]!;
        if (!t.state.available(now)) continue;
        this.idx[n++] = i;
        total += t.weight;
      }
    }
    this.n = n;
    this.total = total;
    return n;
  }

  /** Weighted draw of a position in `idx`, never `skip` (a position, or -1). */
  draw(rng: () => number, skip: number): number {
    const ts = this.targets;
    const total = skip >= 0 ? this.total - ts[this.idx[skip]!]!.weight : this.total;
    let r = rng() * total;
    let last = -1;
    for (let k = 0; k < this.n; k++) {
      if (k === skip) continue;
      last = k;
      r -= ts[this.idx[k]!]!.weight;
      if (r < 0) return k;
    }
    return last; // rounding at the top end
  }
}
