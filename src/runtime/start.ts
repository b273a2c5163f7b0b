// Start a whole Hecate in this process: compile, listeners, background tasks. Used by the
// CLI and by the in-process tests (which pass a config object and port-0 listeners).
import { compileConfig, type CompiledConfig } from "../config/compile.ts";
import { validateConfig, type ConfigError } from "../config/load.ts";
import { UpstreamRegistry } from "../upstream/registry.ts";
import { Runtime } from "./runtime.ts";
import { startListeners, type Listeners } from "./listeners.ts";
import { loadAndCompile, closeReloads } from "./reload.ts";
import { log, setLogLevel, flushLogs } from "../observability/log.ts";
import { hooks } from "../pipeline/hooks.ts";
import { setDraining } from "../admin/server.ts";

export interface Hecate {
  rt: Runtime;
  listeners: Listeners;
  /** Public listener URL, e.g. http://127.0.0.1:12345 */
  url: string;
  adminUrl: string;
  /** Graceful: drain, stop accepting, wait for in-flight up to shutdownTimeoutSec. */
  shutdown(reason?: string): Promise<void>;
}

export class StartError extends Error {
  constructor(readonly errors: ConfigError[]) {
    super(errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("\n"));
  }
}

/**
 * Background services of a runtime (health checks, telemetry…) register here. With several
 * workers (src/runtime/workers.ts) a `mainThreadOnly` service runs once, on the main thread
 * (health checks: one prober per upstream for the whole process); the others run in every
 * serving worker.
 */
export const services: { start(rt: Runtime): void | Promise<void>; stop(rt: Runtime): void | Promise<void>; mainThreadOnly?: boolean }[] = [];

export async function startFromCompiled(compiled: CompiledConfig, registry: UpstreamRegistry, configPath: string | null, opts: { reusePort?: boolean } = {}): Promise<Hecate> {
  if (compiled.config.proxy.workers !== 1) {
    // several serving threads sharing the port and one state (SPEC §3.10): see workers.ts
    const { workerCount, startWithWorkers } = await import("./workers.ts");
    const n = workerCount(compiled.config.proxy.workers);
    if (n > 1) {
      compiled.dispose();
      return startWithWorkers(compiled.config, compiled.noRouteMessage, configPath, n);
    }
  }
  setLogLevel(compiled.config.telemetry.logLevel);
  const rt = new Runtime({ id: 1, compiled, loadedAt: Date.now() }, registry, configPath);
  const listeners = startListeners(rt, opts);
  try {
    for (const s of services) await s.start(rt);
  } catch (e) {
    await listeners.stop(true);
    compiled.dispose();
    throw e;
  }
  hooks.generation(rt);
  rt.ready = true;
  const host = (s: { hostname?: string; port?: number }) => {
    const h = s.hostname === "0.0.0.0" || s.hostname === "::" || !s.hostname ? "127.0.0.1" : s.hostname;
    return `${h.includes(":") ? `[${h}]` : h}:${s.port}`;
  };
  const proto = listeners.tls ? "https" : "http";
  let down: Promise<void> | null = null;
  const hecate: Hecate = {
    rt,
    listeners,
    url: `${proto}://${host(listeners.publicServer)}`,
    adminUrl: `http://${host(listeners.adminServer)}`,
    shutdown(reason = "shutdown") {
      down ??= (async () => {
        log("info", "shutdown", { reason, inflight: rt.inflight });
        // 1. drain: requests on open connections get the drain 503 with Connection: close
        setDraining(rt, true);
        // 2. stop accepting; no reload may swap in a generation that nobody would dispose
        await step("stop accepting", () => listeners.stopAccepting());
        await step("reload", () => closeReloads(rt));
        // 3. let in-flight requests finish, up to shutdownTimeoutSec
        const limit = performance.now() + rt.gen.compiled.config.proxy.server.shutdownTimeoutSec * 1000;
        while (rt.inflight > 0 && performance.now() < limit) await Bun.sleep(10);
        if (rt.inflight > 0) log("warn", "shutdown timeout: closing in-flight requests", { inflight: rt.inflight });
        // 4. close everything: services (health checks…), listeners, upstream pools, timers
        for (const s of services) await step("stop service", () => s.stop(rt));
        await step("close listeners", () => listeners.stop(true));
        await step("close upstream connections", () => {
          rt.httpTransport.close();
          rt.httpsTransport.close();
          rt.h2cTransport?.close();
        });
        await step("dispose generation", () => rt.gen.compiled.dispose());
        rt.ready = false;
        log("info", "stopped", { reason });
        flushLogs();
      })();
      return down;
    },
  };
  return hecate;
}

/** Run one shutdown step; a failing step is logged and the shutdown goes on. */
async function step(what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (e) {
    log("error", `shutdown: ${what} failed`, { error: (e as Error).message });
  }
}

/** Start from a file path (null = embedded default). Throws StartError on a bad config. */
export async function startFromFile(path: string | null, opts: { reusePort?: boolean } = {}): Promise<Hecate> {
  const registry = new UpstreamRegistry();
  const res = await loadAndCompile(path, registry);
  if (!res.ok) throw new StartError(res.errors);
  return startFromCompiled(res.compiled, registry, path, opts);
}

/** Start from a config object (tests). */
export async function startFromObject(raw: unknown, opts: { reusePort?: boolean; configPath?: string } = {}): Promise<Hecate> {
  const loaded = validateConfig(raw);
  if (!loaded.ok) throw new StartError(loaded.errors);
  const registry = new UpstreamRegistry();
  const res = await compileConfig(loaded.config, registry, { disposers: [] });
  if (!res.ok) throw new StartError(res.errors);
  return startFromCompiled(res.compiled, registry, opts.configPath ?? null, opts);
}
