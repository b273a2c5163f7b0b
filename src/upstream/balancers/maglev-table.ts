// Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, §3.4), with Envoy's weighting. Kept apart from the balancer because
// it is the one clever structure here.
//
// Each backend b gets a permutation of the M table slots: offset(b) + j·skip(b) mod M (M prime,
// so every skip visits every slot). Backends take turns claiming their next free preferred
// slot until the table is full. Every backend ends up owning ~M/N slots, and removing one
// backend mostly hands out only the slots it owned: other keys stay where they were (the
// paper measures a few percent of extra movement; see test/contract/balancers.test.ts).
//
// Weights (Envoy `MaglevTable`): in round n a backend of weight w claims a slot only when
// n·w ≥ its next fill mark, which then grows by the largest weight, so it claims w/wmax as
// many slots as the heaviest one.
//
// Cost: O(M log M) expected to build (65537 slots ≈ a few ms); a lookup is one array read.

/** 32-bit hashes of backend names: stable across processes and restarts (xxHash32). */
function h32(s: string, seed: number): number {
  return Bun.hash.xxHash32(s, seed) >>> 0;
}

export const OFFSET_SEED = 0x9e3779b1;
export const SKIP_SEED = 0x85ebca77;

/**
 * Build a table of size `m` (prime) over `names` with `weights`: entry j is the index (into
 * `names`) of the backend owning slot j. `names.length` must be ≥ 1.
 */
export function buildMaglevTable(names: readonly string[], weights: readonly number[], m: number): Uint8Array | Uint16Array | Uint32Array {
  const n = names.length;
  const table = n <= 0xff ? new Uint8Array(m) : n <= 0xffff ? new Uint16Array(m) : new Uint32Array(m);
  const filled = new Uint8Array(m);
  const offset = new Float64Array(n);
  const skip = new Float64Array(n);
  const next = new Float64Array(n);
  const fillMark = new Float64Array(n);
  let wmax = 0;
  for (let i = 0; i < n; i++) {
    offset[i] = h32(names[i]!, OFFSET_SEED) % m;
    skip[i] = (h32(names[i]!, SKIP_SEED) % (m - 1)) + 1;
    if (weights[i]! > wmax) wmax = weights[i]!;
  }
  let count = 0;
  for (let round = 0; count < m; round++) {
    for (let i = 0; i < n && count < m; i++) {
      if (round * weights[i]! < fillMark[i]!) continue;
      fillMark[i]! += wmax;
      let c = (offset[i]! + next[i]! * skip[i]!) % m;
      while (filled[c] === 1) {
        next[i]!++;
        c = (offset[i]! + next[i]! * skip[i]!) % m;
      }
      filled[c] = 1;
      table[c] = i;
      next[i]!++;
      count++;
    }
  }
  return table;
}

/** A 32-bit hash of a request's key (cookie, header or client IP). */
export function keyHash(key: string): number {
  return Bun.hash.xxHash32(key) >>> 0;
}
