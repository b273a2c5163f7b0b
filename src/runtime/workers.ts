// Several serving workers in one process (SPEC §2.2 `workers`, §3.10).
//
// Shape: the main thread is the control plane. It loads and validates the config, runs the
// admin listener, the health checks (one prober per upstream for the whole process), reloads,
// signals and the stdout writer; it serves no public traffic. `workers` Bun Worker threads
// (worker-entry.ts) each compile the config object the main thread validated and serve the
// public listener(s), bound with SO_REUSEPORT on the same address (the kernel spreads new
// connections over them). `workers: 1` (the default) starts none of this: start.ts serves on
// the main thread with plain, unshared state.
//
// One source of truth (shared-state.ts, policy/shared-store.ts): the drain flag, upstream
// health, circuit breakers and every rate-limit bucket (`limits` and keyed rules) live in
// SharedArrayBuffers, so a global 100 rps admits ~100 rps in total and a breaker opened by
// failures seen in one worker is open in all. (With policy.store.redis, keyed limits are in
// Redis instead, shared by instances too.)
//
// Admin actions reach every worker: drain is the shared flag; a reload is validated and
// compiled by the main thread, then handed to the workers, and POST /admin/reload (or SIGHUP)
// completes once every worker serves the new generation (RELOAD_ACK_MS at most); shutdown
// drains, then each worker stops accepting, finishes its in-flight requests (up to
// shutdownTimeoutSec) and exits. /metrics and /admin/stats are one exposition for the process:
// the main thread asks every worker for its counters at scrape time and merges them (counters
// and histograms add up; gauges of live state are read from the shared state).
//
// A worker that dies (an uncaught exception: Bun ends the thread) is logged ("worker died"),
// its in-flight count is dropped, and a new one is started with the current generation
// ("worker restarted"); a worker that keeps dying is restarted with a growing delay (up to
// RESTART_MAX_MS).
import { availableParallelism } from "node:os";
import type { Server } from "bun";
import { compileConfig } from "../config/compile.ts";
import type { Config } from "../config/schema.ts";
import { UpstreamRegistry } from "../upstream/registry.ts";
import { Runtime } from "./runtime.ts";
import { ListenError, type Listeners } from "./listeners.ts";
import { services, StartError, type Hecate } from "./start.ts";
import { closeReloads, reloadFanOut } from "./reload.ts";
import { createAdminHandler, setDraining } from "../admin/server.ts";
import { controls } from "./workers-admin.ts";
import { hooks } from "../pipeline/hooks.ts";
import { log, setLogLevel, flushLogs, writeLines } from "../observability/log.ts";
import { writeSelfSigned } from "../tls/write-self-signed.ts";
import { SharedState, createSharedBuffers } from "./shared-state.ts";
import { createSharedRateTable } from "../policy/shared-store.ts";
import type { CollectorData, FromWorker, GenerationMessage, ToWorker } from "./worker-entry.ts";
import { aggregatorRegistry } from "../observability/prom.ts";
export { mergeCollectors } from "./workers-admin.ts";

/** How long a reload waits for every worker to serve the new generation. */
const RELOAD_ACK_MS = 10_000;
/** How long a scrape waits for the workers' counters. */
const COLLECT_MS = 2_000;
/** How long a worker may take to start. */
const START_MS = 30_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;

/** `workers` as configured → number of serving threads (`auto` = the CPUs this process may use). */
export function workerCount(w: number | "auto"): number {
  return w === "auto" ? Math.max(1, availableParallelism()) : w;
}

/**
 * The worker module. From source, it sits beside this file. In a `bun build --compile`
 * executable every module lives under /$bunfs/root/ named relative to src/ (the common root
 * of the two entry points scripts/build.ts passes: src/main.ts and src/runtime/worker-entry.ts).
 */
function workerEntry(): string {
  if (import.meta.url.includes("/$bunfs/")) return `${import.meta.dir}/runtime/worker-entry.ts`;
  return new URL("./worker-entry.ts", import.meta.url).href;
}

export class WorkerSlot {
  worker: Worker | null = null;
  ready = false;
  /** Deaths since the last start that lasted long enough. */
  failures = 0;
  restarts = 0;
  startedAt = 0;
  lastError = "";
  onMessage: ((m: FromWorker) => void) | null = null;
  constructor(readonly id: number) {}
}

export class Control {
  readonly slots: WorkerSlot[] = [];
  stopping = false;
  port = 0;
  /** Each worker's counters as last collected (prom-client JSON), by worker id. */
  private readonly lastMetrics = new Map<number, unknown[]>();
  /**
   * What workers that died had counted (as of their last scrape), so that the process's
   * counters never go down when a worker is replaced.
   */
  retiredMetrics: unknown[] | null = null;
  private reqSeq = 0;
  private readonly entry = workerEntry();

  constructor(
    readonly rt: Runtime,
    readonly shared: SharedState,
  ) {
    for (let i = 1; i <= shared.buffers.workers; i++) this.slots.push(new WorkerSlot(i));
  }

  generationMessage(): GenerationMessage {
    const c = this.rt.gen.compiled;
    return { id: this.rt.gen.id, config: c.config, noRouteMessage: c.noRouteMessage, slots: this.shared.slotMaps() };
  }

  /** Start the worker of `slot`; resolves with the port it bound once it serves. */
  spawn(slot: WorkerSlot, port: number): Promise<number> {
    const w = new Worker(this.entry);
    slot.worker = w;
    slot.ready = false;
    slot.startedAt = performance.now();
    slot.lastError = "";
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(new Error(`worker ${slot.id} did not start within ${START_MS / 1000} s`)), START_MS);
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (slot.worker === w) slot.worker = null;
        w.terminate();
        reject(e);
      };
      w.addEventListener("message", (ev: MessageEvent) => {
        const m = ev.data as FromWorker;
        switch (m.t) {
          case "log":
            writeLines(m.text);
            return;
          case "lastError": {
            const s = this.rt.registry.byUrl.get(m.url);
            if (s !== undefined) s.lastError = m.value;
            return;
          }
          case "ready":
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            slot.ready = true;
            resolve(m.port);
            return;
          case "failed":
            fail(m.listen !== null ? new ListenError(m.listen.key, m.listen.address, m.message) : new Error(m.message));
            return;
          default:
            slot.onMessage?.(m);
        }
      });
      w.addEventListener("error", (ev: Event) => {
        const e = ev as ErrorEvent;
        slot.lastError = e.message || String(e.error ?? "uncaught exception");
        const missing = slot.lastError.includes("ModuleNotFound") && this.entry.includes("/$bunfs/");
        fail(
          new Error(
            missing
              ? `this executable has no worker module (build it with \`bun run build\`, which passes src/runtime/worker-entry.ts as a second entry point): ${slot.lastError}`
              : `worker ${slot.id} failed while starting: ${slot.lastError}`,
          ),
        );
      });
      w.addEventListener("close", () => {
        if (!settled) return fail(new Error(`worker ${slot.id} exited while starting${slot.lastError ? `: ${slot.lastError}` : ""}`));
        if (slot.worker !== w) return; // replaced or stopped on purpose
        this.died(slot);
      });
      this.post(slot, { t: "init", id: slot.id, buffers: this.shared.buffers, gen: this.generationMessage(), port });
    });
  }

  post(slot: WorkerSlot, m: ToWorker): void {
    slot.worker?.postMessage(m);
  }

  private died(slot: WorkerSlot): void {
    slot.worker = null;
    slot.ready = false;
    this.shared.clearWorker(slot.id);
    const last = this.lastMetrics.get(slot.id);
    this.lastMetrics.delete(slot.id);
    if (last !== undefined) void this.retire(last);
    this.shared.releaseTrials();
    if (this.stopping) return;
    const lived = performance.now() - slot.startedAt;
    slot.failures = lived > 30_000 ? 1 : slot.failures + 1;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.failures - 1));
    log("error", "worker died", { worker: slot.id, error: slot.lastError || "exited", livedSec: Math.round(lived / 1000), restartInMs: delay });
    setTimeout(() => this.restart(slot), delay);
  }

  private restart(slot: WorkerSlot): void {
    if (this.stopping) return;
    this.spawn(slot, this.port).then(
      () => {
        slot.restarts++;
        if (!this.stopping) log("info", "worker restarted", { worker: slot.id, restarts: slot.restarts, generation: this.rt.gen.id });
      },
      (e: Error) => {
        log("error", "worker restart failed", { worker: slot.id, error: e.message });
        if (!this.stopping && slot.worker === null) {
          slot.failures++;
          setTimeout(() => this.restart(slot), Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** slot.failures));
        }
      },
    );
  }

  /** Wait for one message of each live worker that `match` accepts (or its death, or the time limit). */
  private gather<T>(send: ToWorker, match: (m: FromWorker) => T | undefined, ms: number): Promise<Map<number, T>> {
    const out = new Map<number, T>();
    const live = this.slots.filter((s) => s.ready && s.worker !== null);
    return new Promise((resolve) => {
      let left = live.length;
      if (left === 0) return resolve(out);
      const done = () => {
        clearTimeout(timer);
        for (const s of live) s.onMessage = null;
        resolve(out);
      };
      const timer = setTimeout(done, ms);
      for (const s of live) {
        const w = s.worker;
        const onClose = () => {
          if (--left === 0) done();
        };
        w!.addEventListener("close", onClose, { once: true });
        s.onMessage = (m) => {
          const v = match(m);
          if (v === undefined || out.has(s.id)) return;
          out.set(s.id, v);
          w!.removeEventListener("close", onClose);
          if (--left === 0) done();
        };
        this.post(s, send);
      }
    });
  }

  /** After a reload on the main thread: every worker serves the new generation. */
  async fanOut(): Promise<void> {
    const c = this.rt.gen.compiled;
    if (c.tls !== null) {
      // self-signed material generated by this compile is written before the workers read it
      try {
        writeSelfSigned(c.tls, c.config.tls!.certFiles);
      } catch (e) {
        log("error", "tls: cannot write the self-signed certificate", { error: (e as Error).message });
      }
    }
    const g = this.generationMessage();
    this.shared.generation = g.id;
    // a worker still starting gets it after its init (messages are handled in order)
    for (const s of this.slots) if (s.worker !== null && !s.ready) this.post(s, { t: "generation", gen: g });
    const acks = await this.gather({ t: "generation", gen: g }, (m) => (m.t === "ack" && m.generation >= g.id ? m.errors : undefined), RELOAD_ACK_MS);
    const missing = this.slots.filter((s) => s.ready && !acks.has(s.id)).map((s) => s.id);
    if (missing.length > 0) log("warn", "workers did not confirm the reload in time", { generation: g.id, workers: missing });
  }

  async collect(): Promise<{ metrics: unknown[][]; stats: CollectorData[] }> {
    const req = ++this.reqSeq;
    const got = await this.gather({ t: "collect", req }, (m) => (m.t === "collected" && m.req === req ? m : undefined), COLLECT_MS);
    const metrics: unknown[][] = [];
    const stats: CollectorData[] = [];
    for (const [id, m] of got) {
      this.lastMetrics.set(id, m.metrics);
      metrics.push(m.metrics);
      stats.push(m.stats);
    }
    if (this.retiredMetrics !== null) metrics.push(this.retiredMetrics);
    return { metrics, stats };
  }

  private async retire(last: unknown[]): Promise<void> {
    this.retiredMetrics = this.retiredMetrics === null ? last : await aggregatorRegistry().aggregate([this.retiredMetrics, last] as never).getMetricsAsJSON();
  }

  /** Every worker publishes its counters now (exact numbers for the admin API). */
  async sync(): Promise<void> {
    const req = ++this.reqSeq;
    await this.gather({ t: "sync", req }, (m) => (m.t === "synced" && m.req === req ? true : undefined), COLLECT_MS);
  }

  /** Every worker stops gracefully; those still running after `ms` are terminated. */
  async stopWorkers(ms: number): Promise<void> {
    this.stopping = true;
    const all = this.slots.filter((s) => s.worker !== null);
    await Promise.all(
      all.map(
        (s) =>
          new Promise<void>((resolve) => {
            const w = s.worker!;
            const finish = () => {
              clearTimeout(timer);
              s.worker = null;
              s.ready = false;
              w.terminate();
              resolve();
            };
            const timer = setTimeout(() => {
              log("warn", "worker did not stop in time; terminating it", { worker: s.id });
              finish();
            }, ms);
            w.addEventListener("close", finish, { once: true });
            s.onMessage = (m) => {
              if (m.t === "stopped") finish();
            };
            this.post(s, { t: "shutdown" });
          }),
      ),
    );
  }
}

/**
 * Start `n` serving workers with `config` (already validated; compiled again here with shared
 * state). Throws StartError / ListenError like a single-thread start.
 */
export async function startWithWorkers(config: Config, noRouteMessage: string, configPath: string | null, n: number): Promise<Hecate> {
  const shared = new SharedState(createSharedBuffers(n, createSharedRateTable()), 0);
  const registry = new UpstreamRegistry();
  shared.attachRegistry(registry, "main");
  const res = await compileConfig(config, registry, { disposers: [] });
  if (!res.ok) throw new StartError(res.errors);
  const compiled = res.compiled;
  compiled.noRouteMessage = noRouteMessage;
  setLogLevel(config.telemetry.logLevel);
  const rt = new Runtime({ id: 1, compiled, loadedAt: Date.now() }, registry, configPath);
  shared.attachControl(rt);
  shared.generation = 1;
  const ctl = new Control(rt, shared);
  controls.set(rt, ctl);

  const cleanup = async () => {
    ctl.stopping = true;
    for (const s of ctl.slots) s.worker?.terminate();
    compiled.dispose();
  };
  if (compiled.tls !== null)
    try {
      writeSelfSigned(compiled.tls, config.tls!.certFiles);
    } catch (e) {
      await cleanup();
      throw new ListenError("tls", "", (e as Error).message);
    }
  const admin = bindAdmin(rt);
  if (admin instanceof Error) {
    await cleanup();
    throw admin;
  }
  const started: (typeof services)[number][] = [];
  try {
    for (const s of services)
      if (s.mainThreadOnly) {
        await s.start(rt);
        started.push(s);
      }
    // the first worker binds the configured port (maybe 0 = any), the others the same one
    ctl.port = await ctl.spawn(ctl.slots[0]!, compiled.listen.port);
    await Promise.all(ctl.slots.slice(1).map((s) => ctl.spawn(s, ctl.port)));
  } catch (e) {
    for (const s of started) await step("stop service", () => s.stop(rt));
    await admin.stop(true);
    await cleanup();
    throw e;
  }
  reloadFanOut.fn = (r) => controls.get(r)?.fanOut() ?? Promise.resolve();
  hooks.generation(rt);
  rt.ready = true;
  log("info", "workers started", { workers: n, address: `${compiled.listen.hostname}:${ctl.port}` });

  const host = (h: string | undefined, port: number | undefined) => {
    const x = h === "0.0.0.0" || h === "::" || !h ? "127.0.0.1" : h;
    return `${x.includes(":") ? `[${x}]` : x}:${port}`;
  };
  const tls = compiled.tls !== null;
  const publicStub = { hostname: compiled.listen.hostname, port: ctl.port } as unknown as Server<unknown>;
  const listeners: Listeners = {
    publicServer: publicStub,
    http3Server: null,
    adminServer: admin,
    tls,
    async stopAccepting() {},
    async stop(force: boolean) {
      await admin.stop(force);
    },
  };
  let down: Promise<void> | null = null;
  return {
    rt,
    listeners,
    url: `${tls ? "https" : "http"}://${host(compiled.listen.hostname, ctl.port)}`,
    adminUrl: `http://${host(admin.hostname, admin.port)}`,
    shutdown(reason = "shutdown") {
      down ??= (async () => {
        log("info", "shutdown", { reason, inflight: rt.inflight, workers: n });
        // 1. drain (every worker at once: the flag is shared)
        setDraining(rt, true);
        await closeReloads(rt);
        // 2–3. each worker stops accepting and lets its in-flight requests finish
        await ctl.stopWorkers(rt.gen.compiled.config.proxy.server.shutdownTimeoutSec * 1000 + 5000);
        // 4. the main thread's own services, admin listener, health-check connections
        for (const s of services) if (s.mainThreadOnly) await step("stop service", () => s.stop(rt));
        await step("close admin listener", () => admin.stop(true));
        await step("close upstream connections", () => {
          rt.httpTransport.close();
          rt.httpsTransport.close();
        });
        await step("dispose generation", () => rt.gen.compiled.dispose());
        rt.ready = false;
        log("info", "stopped", { reason });
        flushLogs();
      })();
      return down;
    },
  };
}

async function step(what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (e) {
    log("error", `shutdown: ${what} failed`, { error: (e as Error).message });
  }
}

/** The admin listener (on the main thread only). */
function bindAdmin(rt: Runtime): Server<unknown> | ListenError {
  const addr = rt.gen.compiled.adminListen;
  try {
    const s = Bun.serve({
      hostname: addr.hostname,
      port: addr.port,
      idleTimeout: 255,
      development: false,
      fetch: createAdminHandler(rt),
      error(e: Error) {
        log("error", "admin handler failed", { error: e.message });
        return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
      },
    }) as Server<unknown>;
    log("info", "listening", { listener: "admin", address: `${s.hostname}:${s.port}` });
    return s;
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    const why = code === "EADDRINUSE" ? "address already in use" : code === "EACCES" ? "permission denied" : (e as Error).message;
    return new ListenError("admin.listen", addr.text, `admin.listen: cannot listen on ${JSON.stringify(addr.text)}: ${why}`);
  }
}
