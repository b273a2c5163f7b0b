// The status page's own request statistics (SPEC §4 `GET /admin/stats`).
//
// Per route, a ring of one-second buckets over the last WINDOW seconds, each holding the
// request count, errors (5xx and Hecate-generated errors), rate-limit denials and a small
// latency histogram. Fed by `hooks.finish` (wrapped, not replaced: other modules listen too).
// Recording is O(1) and allocates nothing once a route has its series: a bucket is recycled
// in place when its second comes round again. The histogram has BINS fixed log-scale bins
// from MIN_MS to MAX_MS (ratio ≈1.37 between bin edges), so p50/p99 are read back within
// about ±17% — enough for a sparkline, and not a substitute for /metrics.
//
// Collectors are per runtime (tests run several in one process): each generation's compiled
// config maps to its runtime's collector, so a request is counted by the runtime that served
// it, across reloads. Routes are keyed by name, so a route keeps its history over a reload.
import type { Runtime } from "../runtime/runtime.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { CompiledConfig } from "../config/compile.ts";
import { hooks } from "../pipeline/hooks.ts";
import { adminRoute, json } from "./server.ts";

export const WINDOW = 60;
export const BINS = 40;
const MIN_MS = 0.1;
const MAX_MS = 30_000;
const LOG_MIN = Math.log(MIN_MS);
const PER_LOG = BINS / (Math.log(MAX_MS) - LOG_MIN);
/** Seconds over which the headline rates are averaged (complete seconds only). */
export const RATE_SEC = 10;

/** Histogram bin of a latency: bin 0 also takes everything below MIN_MS, the last bin everything above MAX_MS. */
export function binOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const b = Math.floor((Math.log(ms) - LOG_MIN) * PER_LOG);
  return b >= BINS ? BINS - 1 : b;
}

/** Representative latency of a bin: the geometric middle of its edges. */
export function binValue(b: number): number {
  return Math.exp(LOG_MIN + (b + 0.5) / PER_LOG);
}

/** The q-quantile (0..1) of a histogram stored at hist[off .. off+BINS), or -1 when empty. */
export function quantile(hist: ArrayLike<number>, off: number, n: number, q: number): number {
  if (n === 0) return -1;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let b = 0; b < BINS; b++) {
    seen += hist[off + b]!;
    if (seen >= rank) return binValue(b);
  }
  return binValue(BINS - 1);
}

export class RouteSeries {
  /** Epoch second each slot currently holds (-1 = never used). */
  readonly stamp = new Float64Array(WINDOW).fill(-1);
  readonly count = new Uint32Array(WINDOW);
  readonly errors = new Uint32Array(WINDOW);
  readonly denied = new Uint32Array(WINDOW);
  readonly hist = new Uint32Array(WINDOW * BINS);
  total = 0;
  totalErrors = 0;
  totalDenied = 0;
  /** Epoch second of the last request. */
  last = 0;

  record(sec: number, ms: number, error: boolean, denied: boolean): void {
    const i = sec % WINDOW;
    if (this.stamp[i] !== sec) {
      this.stamp[i] = sec;
      this.count[i] = 0;
      this.errors[i] = 0;
      this.denied[i] = 0;
      this.hist.fill(0, i * BINS, i * BINS + BINS);
    }
    this.count[i]!++;
    this.hist[i * BINS + binOf(ms)]!++;
    this.total++;
    this.last = sec;
    if (error) {
      this.errors[i]!++;
      this.totalErrors++;
    }
    if (denied) {
      this.denied[i]!++;
      this.totalDenied++;
    }
  }

  /**
   * The series over the WINDOW seconds ending with `nowSec` (the last point is the current,
   * partial second). Rates average the last RATE_SEC complete seconds, or fewer when the
   * collector is younger (`sinceSec`: its first second).
   */
  snapshot(nowSec: number, sinceSec = 0): SeriesSnapshot {
    const count: number[] = [];
    const errors: number[] = [];
    const denied: number[] = [];
    const p50: (number | null)[] = [];
    const p99: (number | null)[] = [];
    const merged = new Uint32Array(BINS);
    let n = 0;
    let rc = 0;
    let re = 0;
    let rd = 0;
    for (let s = nowSec - WINDOW + 1; s <= nowSec; s++) {
      const i = ((s % WINDOW) + WINDOW) % WINDOW;
      const live = this.stamp[i] === s;
      const c = live ? this.count[i]! : 0;
      count.push(c);
      errors.push(live ? this.errors[i]! : 0);
      denied.push(live ? this.denied[i]! : 0);
      p50.push(live && c > 0 ? round(quantile(this.hist, i * BINS, c, 0.5)) : null);
      p99.push(live && c > 0 ? round(quantile(this.hist, i * BINS, c, 0.99)) : null);
      if (live) {
        for (let b = 0; b < BINS; b++) merged[b]! += this.hist[i * BINS + b]!;
        n += c;
        if (s >= nowSec - RATE_SEC && s < nowSec) {
          rc += c;
          re += this.errors[i]!;
          rd += this.denied[i]!;
        }
      }
    }
    const span = Math.max(1, Math.min(RATE_SEC, nowSec - sinceSec));
    const q50 = quantile(merged, 0, n, 0.5);
    const q99 = quantile(merged, 0, n, 0.99);
    return {
      rate: rc / span,
      errorsPerSec: re / span,
      errorRatio: rc > 0 ? re / rc : 0,
      deniedPerSec: rd / span,
      windowRequests: n,
      p50Ms: q50 < 0 ? null : round(q50),
      p99Ms: q99 < 0 ? null : round(q99),
      totals: { requests: this.total, errors: this.totalErrors, denied: this.totalDenied },
      series: { start: nowSec - WINDOW + 1, count, errors, denied, p50, p99 },
    };
  }
}

export interface SeriesSnapshot {
  /** Requests per second over the last RATE_SEC complete seconds. */
  rate: number;
  errorsPerSec: number;
  /** errors / requests over the same seconds (0 when none). */
  errorRatio: number;
  deniedPerSec: number;
  /** Requests in the whole window (the base of p50/p99). */
  windowRequests: number;
  p50Ms: number | null;
  p99Ms: number | null;
  totals: { requests: number; errors: number; denied: number };
  series: { start: number; count: number[]; errors: number[]; denied: number[]; p50: (number | null)[]; p99: (number | null)[] };
}

function round(ms: number): number {
  return ms < 10 ? Math.round(ms * 100) / 100 : ms < 100 ? Math.round(ms * 10) / 10 : Math.round(ms);
}

export class Collector {
  /** Route name → series; "" = requests that matched no route. */
  readonly routes = new Map<string, RouteSeries>();
  /** Requests by HTTP version as seen by the pipeline (`ex.proto`; "" = not known). */
  readonly protocols = new Map<string, number>();
  /** Port the public listener is bound to, learnt from the first request (0 = unknown yet). */
  publicPort = 0;
  /** Epoch second the collector started counting. */
  readonly since = Math.floor(Date.now() / 1000);
}

const byRuntime = new WeakMap<Runtime, Collector>();
const byCompiled = new WeakMap<CompiledConfig, Collector>();

/** The collector of `rt`, attached to its current generation. */
export function collectorFor(rt: Runtime): Collector {
  let c = byRuntime.get(rt);
  if (c === undefined) byRuntime.set(rt, (c = new Collector()));
  if (byCompiled.get(rt.gen.compiled) !== c) byCompiled.set(rt.gen.compiled, c);
  return c;
}

/** The per-request part: O(1), no allocation after a route's first request. */
export function recordExchange(ex: Exchange, durMs: number): void {
  const c = byCompiled.get(ex.gen.compiled);
  if (c === undefined) return;
  const name = ex.route === null ? "" : ex.route.name;
  let s = c.routes.get(name);
  if (s === undefined) c.routes.set(name, (s = new RouteSeries()));
  const st = ex.status;
  // An error: a 5xx, no answer at all, or any error status Hecate produced itself (no upstream answered).
  const error = st >= 500 || st === 0 || (st >= 400 && ex.upstream === null);
  const d = ex.denied;
  s.record(Math.floor(Date.now() / 1000), durMs, error, d === "rate_limit" || d === "limits");
  c.protocols.set(ex.proto, (c.protocols.get(ex.proto) ?? 0) + 1);
  if (c.publicPort === 0) c.publicPort = ex.server.port ?? 0;
}

const prevFinish = hooks.finish;
hooks.finish = function statsFinish(ex: Exchange, durMs: number): void {
  prevFinish(ex, durMs);
  recordExchange(ex, durMs);
};
const prevGeneration = hooks.generation;
hooks.generation = function statsGeneration(rt: unknown): void {
  prevGeneration(rt);
  collectorFor(rt as Runtime);
};

// ---------------------------------------------------------------------------------------
// The JSON document.

export interface ListenerInfo {
  name: string;
  address: string;
  /** Bound port when known (the configured one may be 0). */
  port: number | null;
  transport: "tcp" | "udp";
  tls: boolean;
  protocols: string[];
}

/** The listeners this configuration asks for and the protocols each offers. */
export function listenersOf(rt: Runtime, c: Collector, adminHost: string): ListenerInfo[] {
  const cc = rt.gen.compiled;
  const p = cc.config.proxy;
  const tls = cc.config.tls !== undefined;
  const out: ListenerInfo[] = [
    {
      name: "public",
      address: cc.listen.text,
      port: c.publicPort || (cc.listen.port === 0 ? null : cc.listen.port),
      transport: "tcp",
      tls,
      protocols: tls ? ["HTTP/1.1", "HTTP/2 (ALPN)"] : p.enableH2C ? ["HTTP/1.1", "HTTP/2 (h2c)"] : ["HTTP/1.1"],
    },
  ];
  if (tls && p.enableHTTP3)
    out.push({ name: "public (HTTP/3)", address: p.http3Listen || cc.listen.text, port: null, transport: "udp", tls: true, protocols: ["HTTP/3"] });
  const colon = adminHost.lastIndexOf(":");
  const adminPort = colon > 0 && !adminHost.endsWith("]") ? Number(adminHost.slice(colon + 1)) : NaN;
  out.push({
    name: "admin",
    address: cc.adminListen.text,
    port: Number.isFinite(adminPort) ? adminPort : cc.adminListen.port || null,
    transport: "tcp",
    tls: false,
    protocols: ["HTTP/1.1"],
  });
  return out;
}

/** `c`: the request statistics to show (with several workers, their merged collectors). */
export function statsDocument(rt: Runtime, adminHost = "", c: Collector = collectorFor(rt)): unknown {
  const now = Date.now();
  const nowSec = Math.floor(now / 1000);
  const cc = rt.gen.compiled;
  const live = new Set<string>();
  const routes = cc.router.ordered.map((r) => {
    live.add(r.name);
    const s = c.routes.get(r.name) ?? EMPTY;
    return {
      name: r.name,
      hosts: r.hosts,
      pathPrefix: r.pathPrefix,
      lb: r.balancer?.algorithm ?? r.config.lb.algorithm,
      sticky: r.sticky !== null,
      upstreams: r.upstreams.map((t) => t.url),
      ...s.snapshot(nowSec, c.since),
    };
  });
  // Routes removed by a reload keep their series until they have been idle for a window.
  for (const [name, s] of c.routes) if (name !== "" && !live.has(name) && nowSec - s.last > WINDOW) c.routes.delete(name);

  const upstreams = [...cc.upstreamUrls].map(([url, { target, routes: rs }]) => {
    const st = rt.registry.byUrl.get(url) ?? target.state;
    const b = st.breaker;
    const cooldownLeft = b.state === "open" ? Math.max(0, b.settings.cooldownMs - (now - b.openedAt)) : 0;
    return {
      url,
      origin: st.origin,
      routes: rs,
      healthy: st.healthy,
      breaker: b.state,
      breakerEnabled: b.settings.enabled,
      cooldownLeftMs: Math.round(cooldownLeft),
      inflight: st.inflight,
      lastError: st.lastError,
      history: st.history.slice(-10).map(([at, event, reason]) => ({ at, event, reason })),
    };
  });

  const protocols: Record<string, number> = {};
  for (const [p, n] of c.protocols) protocols[p === "" ? "unknown" : p] = n;

  return {
    now,
    windowSec: WINDOW,
    rateSec: RATE_SEC,
    uptimeSec: Math.round((now - rt.startedAt) / 1000),
    generation: { id: rt.gen.id, loadedAt: rt.gen.loadedAt, configPath: rt.configPath, lastReload: rt.lastReload },
    draining: rt.draining,
    inflight: rt.inflight,
    requests: rt.requests,
    listeners: listenersOf(rt, c, adminHost),
    protocols,
    routes,
    unmatched: (c.routes.get("") ?? EMPTY).snapshot(nowSec, c.since),
    upstreams,
  };
}

const EMPTY = new RouteSeries();

const NO_STORE = { "content-type": "application/json", "cache-control": "no-store" };

adminRoute("/admin/stats", {
  GET: (req, rt) => {
    const r = json(statsDocument(rt, req.headers.get("host") ?? ""));
    for (const [k, v] of Object.entries(NO_STORE)) r.headers.set(k, v);
    return r;
  },
});
