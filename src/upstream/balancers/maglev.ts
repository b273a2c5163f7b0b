// Consistent hashing with a Maglev table (SPEC §3.3, `maglev` and `consistent_hash`).
//
// The table is built over the AVAILABLE upstreams only, so a key whose upstream is ejected
// moves (and only such keys move, plus Maglev's few percent), and a key never lands on an
// unavailable upstream. Tables are built lazily, the first time a pick sees a given set of
// available upstreams, and cached by that set's bitmask: a pick computes the mask (one
// `available()` per upstream) and reuses the table; an upstream that flaps between two states
// reuses both tables. Nothing is rebuilt per request.
//
// Retries (`exclude`): walk the table from the key's slot to the next slot owned by an untried
// upstream, so a retried key still lands somewhere stable.
import type { Balancer, PickContext } from "./balancer.ts";
import type { UpstreamTarget } from "../target.ts";
import { buildMaglevTable, keyHash } from "./maglev-table.ts";

/** Tables kept per balancer (one per availability set seen recently). */
const CACHE_MAX = 8;
/** Above this many upstreams the mask is a string (a Number holds 53 bits exactly). */
const NUMERIC_MASK_MAX = 52;

interface Table {
  /** Slot → index into `MaglevBalancer.targets`. */
  readonly slots: Uint8Array | Uint16Array | Uint32Array;
  /** The available upstreams it was built over, as indexes into `targets`. */
  readonly members: Int32Array;
}

export class MaglevBalancer implements Balancer {
  readonly algorithm = "maglev";
  private readonly targets: readonly UpstreamTarget[];
  private readonly size: number;
  private readonly pow2: Float64Array;
  private readonly cache = new Map<number | string, Table>();
  private lastMask: number | string = -1;
  private lastTable: Table | null = null;
  /** How many tables were built (tests: "never rebuild per request"). */
  builds = 0;

  constructor(targets: readonly UpstreamTarget[], tableSize: number) {
    this.targets = targets;
    this.size = tableSize;
    this.pow2 = new Float64Array(Math.min(targets.length, NUMERIC_MASK_MAX));
    for (let i = 0; i < this.pow2.length; i++) this.pow2[i] = 2 ** i;
  }

  pick(ctx: PickContext, exclude: readonly UpstreamTarget[] | null, _dryRun = false): UpstreamTarget | undefined {
    const table = this.tableFor(ctx.now);
    if (table === null) return undefined;
    const ts = this.targets;
    const slots = table.slots;
    const m = slots.length;
    let s = keyHash(ctx.hashKey) % m;
    const t = ts[slots[s]!]!;
    if (exclude === null || !exclude.includes(t)) return t;
    // A retry: is any available upstream untried? Then walk to the next slot it owns.
    let untried = false;
    for (let k = 0; k < table.members.length; k++)
      if (!exclude.includes(ts[table.members[k]!]!)) {
        untried = true;
        break;
      }
    if (!untried) return t;
    for (let k = 1; k < m; k++) {
      if (++s === m) s = 0;
      const u = ts[slots[s]!]!;
      if (!exclude.includes(u)) return u;
    }
    return t;
  }

  /** The table over the upstreams available now, built on first use of this set. */
  private tableFor(now: number): Table | null {
    const ts = this.targets;
    let mask: number | string;
    let any = false;
    if (ts.length <= NUMERIC_MASK_MAX) {
      let m = 0;
      for (let i = 0; i < ts.length; i++)
        if (ts[i]!.state.available(now)) {
          m += this.pow2[i]!;
          any = true;
        }
      mask = m;
    } else {
      let m = "";
      for (let i = 0; i < ts.length; i++) {
        const a = ts[i]!.state.available(now);
        m += a ? "1" : "0";
        if (a) any = true;
      }
      mask = m;
    }
    if (!any) return null;
    if (mask === this.lastMask) return this.lastTable;
    let table = this.cache.get(mask);
    if (table === undefined) {
      table = this.build(mask);
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(mask, table);
    }
    this.lastMask = mask;
    this.lastTable = table;
    return table;
  }

  private build(mask: number | string): Table {
    const ts = this.targets;
    const members: number[] = [];
    for (let i = 0; i < ts.length; i++) {
      const on = typeof mask === "number" ? Math.floor(mask / this.pow2[i]!) % 2 === 1 : mask.charCodeAt(i) === 49;
      if (on) members.push(i);
    }
    const local = buildMaglevTable(
      members.map((i) => ts[i]!.url),
      members.map((i) => ts[i]!.weight),
      this.size,
    );
    // map local member positions to indexes into `targets`
    const slots = ts.length <= 0xff ? new Uint8Array(this.size) : ts.length <= 0xffff ? new Uint16Array(this.size) : new Uint32Array(this.size);
    for (let j = 0; j < local.length; j++) slots[j] = members[local[j]!]!;
    this.builds++;
    return { slots, members: Int32Array.from(members) };
  }
}
