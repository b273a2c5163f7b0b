// A serving worker thread (SPEC §3.10; started by src/runtime/workers.ts). It compiles the
// config object that the main thread validated — never the file itself, so every thread
// serves exactly the same generation — binds the public listener(s) with SO_REUSEPORT beside
// the other workers, and serves. State that must be one for the process (drain flag, upstream
// health, breakers, rate-limit buckets) is in the shared buffers; its own counters are
// published for the main thread every PUBLISH_MS. Log lines go to the main thread, the one
// writer of stdout. It has no admin listener and runs no health checks (`mainThreadOnly`
// services): the main thread does both for the whole process.
//
// Messages are handled one at a time, in order (a reload that arrives while the worker is
// still starting is applied after the start).
import { parentPort } from "node:worker_threads";
import "../register.ts";
import { compileConfig, type CompiledConfig } from "../config/compile.ts";
import type { Config } from "../config/schema.ts";
import type { ConfigError } from "../config/load.ts";
import { UpstreamRegistry } from "../upstream/registry.ts";
import { Runtime } from "./runtime.ts";
import { startListeners, ListenError, type Listeners } from "./listeners.ts";
import { services } from "./start.ts";
import { hooks } from "../pipeline/hooks.ts";
import { log, setLogLevel, redirectLogs, flushLogs } from "../observability/log.ts";
import { SharedState, PUBLISH_MS, type SharedBuffers, type SlotMaps } from "./shared-state.ts";
import { SharedRateTable, sharedBuckets } from "../policy/shared-store.ts";
import { metricsJson } from "../observability/metrics.ts";
import { collectorFor } from "../admin/stats.ts";

/** One generation as the main thread sends it. */
export interface GenerationMessage {
  id: number;
  config: Config;
  noRouteMessage: string;
  slots: SlotMaps;
}

/** A worker's request statistics (admin/stats.ts Collector) in transferable form. */
export interface CollectorData {
  since: number;
  publicPort: number;
  protocols: [string, number][];
  routes: [string, { stamp: Float64Array; count: Uint32Array; errors: Uint32Array; denied: Uint32Array; hist: Uint32Array; total: number; totalErrors: number; totalDenied: number; last: number }][];
}

export type ToWorker =
  | { t: "init"; id: number; buffers: SharedBuffers; gen: GenerationMessage; port: number }
  | { t: "generation"; gen: GenerationMessage }
  | { t: "collect"; req: number }
  | { t: "sync"; req: number }
  | { t: "shutdown" }
  | { t: "crash" };

export type FromWorker =
  | { t: "ready"; port: number; generation: number }
  | { t: "failed"; message: string; listen: { key: string; address: string } | null }
  | { t: "log"; text: string }
  | { t: "ack"; generation: number; errors: ConfigError[] }
  | { t: "collected"; req: number; metrics: unknown[]; stats: CollectorData }
  | { t: "lastError"; url: string; value: string }
  | { t: "synced"; req: number }
  | { t: "stopped" };

const port = parentPort;
if (port === null) throw new Error("worker-entry.ts runs only as a worker thread (src/runtime/workers.ts starts it)");
const post = (m: FromWorker) => port.postMessage(m);

let shared: SharedState;
let registry: UpstreamRegistry;
let rt: Runtime | null = null;
let listeners: Listeners | null = null;
let tick: ReturnType<typeof setInterval> | undefined;
const workerServices = services.filter((s) => !s.mainThreadOnly);
/** lastError values already sent to the main thread, by URL. */
const sentErrors = new Map<string, string>();

async function compile(g: GenerationMessage): Promise<{ ok: true; compiled: CompiledConfig } | { ok: false; errors: ConfigError[] }> {
  shared.setSlotMaps(g.slots);
  const res = await compileConfig(g.config, registry, { disposers: [] });
  if (res.ok) res.compiled.noRouteMessage = g.noRouteMessage;
  return res;
}

async function init(m: Extract<ToWorker, { t: "init" }>): Promise<void> {
  redirectLogs((text) => post({ t: "log", text }));
  shared = new SharedState(m.buffers, m.id);
  sharedBuckets.table = new SharedRateTable(m.buffers.rateTable);
  registry = new UpstreamRegistry();
  shared.attachRegistry(registry, "worker");
  const res = await compile(m.gen);
  if (!res.ok) {
    post({ t: "failed", message: res.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("\n"), listen: null });
    return;
  }
  const compiled = res.compiled;
  // Workers after the first bind the port the first one got (the config may say port 0).
  if (m.port !== 0) (compiled as { listen: CompiledConfig["listen"] }).listen = { ...compiled.listen, port: m.port };
  const r = new Runtime({ id: m.gen.id, compiled, loadedAt: Date.now() }, registry, null);
  shared.attachWorker(r);
  setLogLevel(compiled.config.telemetry.logLevel);
  try {
    listeners = startListeners(r, { reusePort: true, admin: false });
    for (const s of workerServices) await s.start(r);
  } catch (e) {
    await listeners?.stop(true);
    const listen = e instanceof ListenError ? { key: e.key, address: e.address } : null;
    post({ t: "failed", message: (e as Error)?.message ?? String(e), listen });
    flushLogs();
    return;
  }
  rt = r;
  hooks.generation(r);
  r.ready = true;
  tick = setInterval(publish, PUBLISH_MS);
  publish();
  post({ t: "ready", port: listeners.publicServer.port ?? m.port, generation: r.gen.id });
}

/** Counters into shared memory; changed lastError values to the main thread. */
function publish(): void {
  if (rt === null) return;
  shared.publish(rt);
  for (const s of rt.registry.byUrl.values()) {
    if (s.lastError === "" || sentErrors.get(s.url) === s.lastError) continue;
    sentErrors.set(s.url, s.lastError);
    post({ t: "lastError", url: s.url, value: s.lastError });
  }
}

async function generation(g: GenerationMessage): Promise<void> {
  const r = rt;
  if (r === null || g.id <= r.gen.id) {
    post({ t: "ack", generation: g.id, errors: [] });
    return;
  }
  const old = r.gen;
  let res: Awaited<ReturnType<typeof compile>>;
  try {
    res = await compile(g);
  } catch (e) {
    res = { ok: false, errors: [{ path: "", message: `internal error while compiling: ${(e as Error).message}` }] };
  }
  if (!res.ok) {
    r.registry.retain(new Set(old.compiled.upstreamUrls.keys()));
    log("error", "worker: reload failed; this worker keeps the previous generation", { worker: shared.worker, generation: g.id, errors: res.errors });
    post({ t: "ack", generation: g.id, errors: res.errors });
    return;
  }
  // swap() numbers the new generation old.id + 1: make that the main thread's number
  r.gen = { ...old, id: g.id - 1 };
  r.swap(res.compiled);
  post({ t: "ack", generation: r.gen.id, errors: [] });
}

async function collect(req: number): Promise<void> {
  const r = rt;
  if (r === null) return;
  publish();
  // counters and histograms only: gauges (live state) and process metrics come from the main thread
  const metrics = (await metricsJson(r)).filter((m) => m.name.startsWith("hecate_") && String(m.type) !== "gauge");
  const c = collectorFor(r);
  const stats: CollectorData = {
    since: c.since,
    publicPort: c.publicPort,
    protocols: [...c.protocols],
    routes: [...c.routes].map(([name, s]) => [
      name,
      { stamp: s.stamp, count: s.count, errors: s.errors, denied: s.denied, hist: s.hist, total: s.total, totalErrors: s.totalErrors, totalDenied: s.totalDenied, last: s.last },
    ]),
  };
  post({ t: "collected", req, metrics, stats });
}

/** Graceful stop: stop accepting, let in-flight requests finish (up to shutdownTimeoutSec), close. */
async function shutdown(): Promise<void> {
  const r = rt;
  if (r !== null && listeners !== null) {
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (e) {
        log("error", `worker shutdown: ${what} failed`, { worker: shared.worker, error: (e as Error).message });
      }
    };
    const l = listeners;
    await step("stop accepting", () => l.stopAccepting());
    const limit = performance.now() + r.gen.compiled.config.proxy.server.shutdownTimeoutSec * 1000;
    while (r.inflight > 0 && performance.now() < limit) await Bun.sleep(10);
    if (r.inflight > 0) log("warn", "shutdown timeout: closing in-flight requests", { worker: shared.worker, inflight: r.inflight });
    for (const s of workerServices) await step("stop service", () => s.stop(r));
    await step("close listeners", () => l.stop(true));
    await step("close upstream connections", () => {
      r.httpTransport.close();
      r.httpsTransport.close();
    });
    await step("dispose generation", () => r.gen.compiled.dispose());
    r.ready = false;
    clearInterval(tick);
    publish();
  }
  flushLogs();
  post({ t: "stopped" });
}

let queue: Promise<void> = Promise.resolve();
port.on("message", (m: ToWorker) => {
  if (m.t === "crash") {
    // debug only (HECATE_DEBUG_WORKER=1): an uncaught exception, as a bug would throw one
    setTimeout(() => {
      throw new Error(`worker ${shared?.worker} crashed on request (HECATE_DEBUG_WORKER)`);
    }, 0);
    return;
  }
  queue = queue
    .then(() => {
      switch (m.t) {
        case "init":
          return init(m);
        case "generation":
          return generation(m.gen);
        case "collect":
          return collect(m.req);
        case "sync":
          publish();
          return post({ t: "synced", req: m.req });
        case "shutdown":
          return shutdown();
      }
    })
    .catch((e: Error) => {
      if (m.t === "init") post({ t: "failed", message: e?.message ?? String(e), listen: null });
      else log("error", "worker: message handling failed", { worker: shared?.worker, message: m.t, error: e?.message ?? String(e) });
    });
});
