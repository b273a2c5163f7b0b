// Every Prometheus metric of Hecate (SPEC §5: the names are a contract) and the cheap
// recording API the pipeline hooks call.
//
// Why not prom-client's `labels(...).inc()` on the request path: a prom-client child still
// hashes its label object (string concatenation) and validates it on every call. Here each
// series is a plain "cell" (a number, or bucket counts) created once per label set and cached
// on the route / upstream objects of the current generation, so recording a request is a few
// array reads and additions. prom-client still owns the registry, the names, HELP/TYPE and the
// text exposition: the metric classes below only override `get()` to read the cells at scrape
// time, and gauges of live state (health, breakers, in-flight, drain, generation) are computed
// in `collect()` from the runtime being scraped.
//
// Several workers: every cell is a plain number, and `get()` returns prom-client's JSON shape,
// so per-worker registries merge with `AggregatorRegistry.aggregate(workersJson)` (counters and
// histograms sum; each gauge declares its `aggregator`). `metricsJson()` is what a worker sends.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Aggregator } from "./prom.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { CompiledRoute } from "../config/compile.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { Outcome } from "../upstream/forward.ts";
import type { Runtime } from "../runtime/runtime.ts";

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Request and upstream duration buckets, seconds: 0.5 ms … 30 s. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The `method` label values; anything else is OTHER (bounded cardinality). */
export const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "OTHER"] as const;

export function methodIndex(m: string): number {
  switch (m) {
    case "GET":
      return 0;
    case "HEAD":
      return 1;
    case "POST":
      return 2;
    case "PUT":
      return 3;
    case "DELETE":
      return 4;
    case "PATCH":
      return 5;
    case "OPTIONS":
      return 6;
    case "TRACE":
      return 7;
    default:
      return 8;
  }
}

export const OUTCOMES: readonly Outcome[] = ["ok", "http_5xx", "connect_error", "timeout", "aborted"];
function outcomeIndex(o: Outcome): number {
  switch (o) {
    case "ok":
      return 0;
    case "http_5xx":
      return 1;
    case "connect_error":
      return 2;
    case "timeout":
      return 3;
    default:
      return 4;
  }
}

export type RetryReason = "connect_error" | "status_5xx" | "timeout";
export const RETRY_REASONS: readonly RetryReason[] = ["connect_error", "status_5xx", "timeout"];
export const POLICIES = ["limits", "ip_acl", "geoip", "asn", "rate_limit", "auth"] as const;

// --- cells -------------------------------------------------------------------------------

type Labels = Record<string, string>;

export interface CounterCell {
  readonly labels: Labels;
  value: number;
}

export class HistogramCell {
  readonly labels: Labels;
  /** Non-cumulative counts per bucket; the last slot is the +Inf overflow. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(labels: Labels) {
    this.labels = labels;
    this.counts = new Float64Array(DURATION_BUCKETS.length + 1);
  }
  observe(seconds: number): void {
    const b = DURATION_BUCKETS;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** Cells of one metric, keyed by their label values (used only when a cell is created). */
class CellStore<C> {
  readonly cells = new Map<string, C>();
  constructor(private readonly make: (labels: Labels) => C) {}
  get(labels: Labels): C {
    let key = "";
    for (const k in labels) key += labels[k] + "\u0000";
    let c = this.cells.get(key);
    if (c === undefined) {
      c = this.make(labels);
      this.cells.set(key, c);
    }
    return c;
  }
}

/** A prom-client Counter whose values are read from cells at scrape time. */
class CellCounter extends Counter<string> {
  readonly store = new CellStore<CounterCell>((labels) => ({ labels, value: 0 }));
  override async get() {
    const values: { labels: Labels; value: number }[] = [];
    for (const c of this.store.cells.values()) values.push({ labels: c.labels, value: c.value });
    return { name: NAME(this), help: HELP(this), type: "counter" as never, values, aggregator: "sum" as Aggregator, collect: undefined as never };
  }
}

/** A prom-client Histogram whose values are read from cells at scrape time. */
class CellHistogram extends Histogram<string> {
  readonly store = new CellStore<HistogramCell>((labels) => new HistogramCell(labels));
  override async get() {
    return { name: NAME(this), help: HELP(this), type: "histogram" as never, values: histogramValues(NAME(this), this.store.cells.values()), aggregator: "sum" as Aggregator, collect: undefined as never };
  }
  /** The registry prefers this for the text format; same data. */
  async getForPromString() {
    return this.get();
  }
}

const NAME = (m: object) => (m as { name: string }).name;
const HELP = (m: object) => (m as { help: string }).help;

function histogramValues(name: string, cells: Iterable<HistogramCell>) {
  const out: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
  const bucket = `${name}_bucket`;
  for (const c of cells) {
    let acc = 0;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      acc += c.counts[i]!;
      out.push({ labels: { ...c.labels, le: DURATION_BUCKETS[i]! }, value: acc, metricName: bucket });
    }
    out.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: bucket });
    out.push({ labels: c.labels, value: c.sum, metricName: `${name}_sum` });
    out.push({ labels: c.labels, value: c.count, metricName: `${name}_count` });
  }
  return out;
}

// --- the metrics (SPEC §5) ------------------------------------------------------------------

const registers = [registry];

export const requestsTotal = new CellCounter({
  name: "hecate_requests_total",
  help: "Public requests handled, by route, method and response status code.",
  labelNames: ["route", "method", "code"],
  registers,
});
export const requestDuration = new CellHistogram({
  name: "hecate_request_duration_seconds",
  help: "Time from accepting a public request to the end of its response, in seconds.",
  labelNames: ["route", "method"],
  buckets: DURATION_BUCKETS as number[],
  registers,
});
export const upstreamRequestsTotal = new CellCounter({
  name: "hecate_upstream_requests_total",
  help: "Upstream attempts by route, upstream origin and outcome (ok, http_5xx, connect_error, timeout, aborted).",
  labelNames: ["route", "upstream", "outcome"],
  registers,
});
export const upstreamDuration = new CellHistogram({
  name: "hecate_upstream_duration_seconds",
  help: "Time of one upstream attempt until response headers (or failure), in seconds, by upstream origin.",
  labelNames: ["upstream"],
  buckets: DURATION_BUCKETS as number[],
  registers,
});
export const retriesTotal = new CellCounter({
  name: "hecate_retries_total",
  help: "Retries by route and reason (connect_error, status_5xx, timeout).",
  labelNames: ["route", "reason"],
  registers,
});
export const policyDeniedTotal = new CellCounter({
  name: "hecate_policy_denied_total",
  help: "Requests denied by a policy (limits, ip_acl, geoip, asn, rate_limit, auth), by route.",
  labelNames: ["route", "policy"],
  registers,
});
export const configReloadsTotal = new CellCounter({
  name: "hecate_config_reloads_total",
  help: "Config reloads by result (success, failure).",
  labelNames: ["result"],
  registers,
});

/**
 * Beyond the SPEC §5 list (hence not in ALL / METRIC_NAMES, which are that contract): decisions a
 * shared rate-limit store (Redis, §3.10) could not make, answered by `failOpen`.
 */
export const ratelimitStoreErrorsTotal = new CellCounter({
  name: "hecate_ratelimit_store_errors_total",
  help: "Rate-limit decisions the shared store (Redis) could not make, by the answer failOpen gave (fail_open admitted, fail_closed refused).",
  labelNames: ["result"],
  registers,
});

/** The runtime whose admin listener is being scraped (gauges of live state read it). */
let scrapeRt: Runtime | null = null;
/** The last runtime that became live (fallback when no scrape is in progress). */
let liveRt: Runtime | null = null;
const rtNow = () => scrapeRt ?? liveRt;

export const upstreamHealthy = new Gauge({
  name: "hecate_upstream_healthy",
  help: "1 when the upstream origin passes its active health checks (0 if any of its URLs is ejected).",
  labelNames: ["upstream"],
  aggregator: "first",
  registers,
  collect() {
    this.reset();
    const rt = rtNow();
    if (rt === null) return;
    const byOrigin = new Map<string, number>();
    for (const s of rt.registry.byUrl.values()) byOrigin.set(s.origin, Math.min(byOrigin.get(s.origin) ?? 1, s.healthy ? 1 : 0));
    for (const [origin, v] of byOrigin) this.set({ upstream: origin }, v);
  },
});
export const circuitBreakerState = new Gauge({
  name: "hecate_circuit_breaker_state",
  help: "Circuit breaker state per upstream origin: 0 closed, 1 half-open, 2 open.",
  labelNames: ["upstream"],
  aggregator: "first",
  registers,
  collect() {
    this.reset();
    const rt = rtNow();
    if (rt === null) return;
    for (const [origin, b] of rt.registry.breakers) this.set({ upstream: origin }, b.state === "closed" ? 0 : b.state === "half-open" ? 1 : 2);
  },
});
export const inflightRequests = new Gauge({
  name: "hecate_inflight_requests",
  help: "Public requests being handled now (admin requests are not counted).",
  aggregator: "sum",
  registers,
  collect() {
    this.set(rtNow()?.inflight ?? 0);
  },
});
export const draining = new Gauge({
  name: "hecate_draining",
  help: "1 while draining (new requests get 503), else 0.",
  aggregator: "max",
  registers,
  collect() {
    this.set(rtNow()?.draining ? 1 : 0);
  },
});
export const configGeneration = new Gauge({
  name: "hecate_config_generation",
  help: "Generation of the config now serving (1 at start, +1 per successful reload).",
  aggregator: "max",
  registers,
  collect() {
    this.set(rtNow()?.gen.id ?? 0);
  },
});

const ALL = [
  requestsTotal,
  requestDuration,
  upstreamRequestsTotal,
  upstreamDuration,
  retriesTotal,
  policyDeniedTotal,
  configReloadsTotal,
  upstreamHealthy,
  circuitBreakerState,
  inflightRequests,
  draining,
  configGeneration,
];
/** Every metric name Hecate defines (the dashboard test checks its queries against this). */
export const METRIC_NAMES: readonly string[] = ALL.map(NAME);
/** Label names of each metric, by metric name. */
export const METRIC_LABELS: ReadonlyMap<string, readonly string[]> = new Map(ALL.map((m) => [NAME(m), (m as unknown as { labelNames: string[] }).labelNames]));

// --- per-route / per-upstream caches --------------------------------------------------------

/** The cells of one route name, shared by every generation that has a route of that name. */
class RouteCells {
  readonly name: string;
  /** Per method index: status code → cell. */
  readonly codes: Map<number, CounterCell>[];
  /** Per method index; created on first use. */
  readonly durations: (HistogramCell | undefined)[];
  readonly retries: CounterCell[];
  readonly denied = new Map<string, CounterCell>();
  constructor(name: string) {
    this.name = name;
    this.codes = METHODS.map(() => new Map<number, CounterCell>());
    this.durations = METHODS.map(() => undefined);
    this.retries = RETRY_REASONS.map((reason) => retriesTotal.store.get({ route: name, reason }));
  }
  code(mi: number, status: number): CounterCell {
    const m = this.codes[mi]!;
    let c = m.get(status);
    if (c === undefined) {
      c = requestsTotal.store.get({ route: this.name, method: METHODS[mi]!, code: String(status) });
      m.set(status, c);
    }
    return c;
  }
  duration(mi: number): HistogramCell {
    return (this.durations[mi] ??= requestDuration.store.get({ route: this.name, method: METHODS[mi]! }));
  }
  deniedCell(policy: string): CounterCell {
    let c = this.denied.get(policy);
    if (c === undefined) {
      c = policyDeniedTotal.store.get({ route: this.name, policy });
      this.denied.set(policy, c);
    }
    return c;
  }
}

/** Cells of one upstream of one route. */
interface TargetCells {
  readonly outcomes: CounterCell[];
  readonly duration: HistogramCell;
}

const routeCellsByName = new Map<string, RouteCells>();
const UNMATCHED = routeCellsFor("");
let byRoute = new WeakMap<CompiledRoute, RouteCells>();
let byTarget = new WeakMap<UpstreamTarget, TargetCells>();

function routeCellsFor(name: string): RouteCells {
  let rc = routeCellsByName.get(name);
  if (rc === undefined) {
    rc = new RouteCells(name);
    routeCellsByName.set(name, rc);
  }
  return rc;
}

function cellsOfRoute(route: CompiledRoute | null): RouteCells {
  if (route === null) return UNMATCHED;
  let rc = byRoute.get(route);
  if (rc === undefined) {
    rc = routeCellsFor(route.name);
    byRoute.set(route, rc);
  }
  return rc;
}

function cellsOfTarget(route: CompiledRoute | null, t: UpstreamTarget): TargetCells {
  let tc = byTarget.get(t);
  if (tc === undefined) {
    const name = route?.name ?? "";
    tc = {
      outcomes: OUTCOMES.map((outcome) => upstreamRequestsTotal.store.get({ route: name, upstream: t.origin, outcome })),
      duration: upstreamDuration.store.get({ upstream: t.origin }),
    };
    byTarget.set(t, tc);
  }
  return tc;
}

for (const result of ["success", "failure"]) configReloadsTotal.store.get({ result });
const reloadOk = configReloadsTotal.store.get({ result: "success" });
const reloadFailed = configReloadsTotal.store.get({ result: "failure" });
const storeFailOpen = ratelimitStoreErrorsTotal.store.get({ result: "fail_open" });
const storeFailClosed = ratelimitStoreErrorsTotal.store.get({ result: "fail_closed" });

// --- recording API (called from the pipeline hooks) -------------------------------------------

/** A generation went live: precompute the cells of its routes and upstreams. */
export function onGeneration(rt: Runtime): void {
  liveRt = rt;
  const routes = rt.gen.compiled.routes;
  byRoute = new WeakMap();
  byTarget = new WeakMap();
  for (const r of routes) {
    cellsOfRoute(r);
    for (const t of r.upstreams) cellsOfTarget(r, t);
  }
}

/** The exchange is complete. */
export function recordFinish(ex: Exchange, durMs: number): void {
  const rc = cellsOfRoute(ex.route);
  const mi = methodIndex(ex.method);
  rc.code(mi, ex.status).value++;
  rc.duration(mi).observe(durMs / 1000);
}

/** One upstream attempt ended. */
export function recordAttempt(ex: Exchange, t: UpstreamTarget, outcome: Outcome, ms: number): void {
  const tc = cellsOfTarget(ex.route, t);
  tc.outcomes[outcomeIndex(outcome)]!.value++;
  tc.duration.observe(ms / 1000);
}

export function recordRetry(route: CompiledRoute, reason: RetryReason): void {
  cellsOfRoute(route).retries[reason === "connect_error" ? 0 : reason === "status_5xx" ? 1 : 2]!.value++;
}

/** A policy denied the request; `policy` is one of POLICIES. */
export function recordDenied(ex: Exchange, policy: string): void {
  cellsOfRoute(ex.route).deniedCell(policy).value++;
}

/** The shared rate-limit store failed one decision; `failOpen` gave this answer. */
export function recordStoreError(result: "fail_open" | "fail_closed"): void {
  (result === "fail_open" ? storeFailOpen : storeFailClosed).value++;
}

export function recordReload(ok: boolean): void {
  (ok ? reloadOk : reloadFailed).value++;
}

// --- exposition ------------------------------------------------------------------------------

/** The Prometheus text exposition, with live-state gauges read from `rt`. */
export async function exposition(rt: Runtime): Promise<string> {
  scrapeRt = rt;
  try {
    // every collect() runs synchronously when metrics() starts, so scrapeRt is seen by all
    return await registry.metrics();
  } finally {
    scrapeRt = null;
  }
}

export const contentType = registry.contentType;

/** prom-client's JSON form (what a worker would send for `AggregatorRegistry.aggregate`). */
export async function metricsJson(rt: Runtime) {
  scrapeRt = rt;
  try {
    return await registry.getMetricsAsJSON();
  } finally {
    scrapeRt = null;
  }
}
