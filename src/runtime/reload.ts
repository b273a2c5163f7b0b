// load → validate → compile → swap. A failure leaves the old generation serving.
import { loadConfigFile, validateConfig, type ConfigError } from "../config/load.ts";
import { compileConfig, type CompiledConfig } from "../config/compile.ts";
import type { Config } from "../config/schema.ts";
import type { Runtime } from "./runtime.ts";
import type { UpstreamRegistry } from "../upstream/registry.ts";
import { log } from "../observability/log.ts";
import { hooks } from "../pipeline/hooks.ts";

export interface ReloadResult {
  ok: boolean;
  generation: number;
  errors: ConfigError[];
  changed: { routes: { added: string[]; removed: string[]; changed: string[] } };
  needsRestart: string[];
}

/** The embedded default (SPEC §2.9): plain HTTP on :8080, admin on 127.0.0.1:9000, no routes. */
export const EMBEDDED_DEFAULT = { admin: { listen: "127.0.0.1:9000" }, proxy: { listen: ":8080" } };
/** What every request gets (404) on the embedded default. */
export const EMBEDDED_DEFAULT_404 = "hecate is running on its embedded default config and has no routes; start it with -config=FILE (see hecate --help)";

export async function loadAndCompile(
  path: string | null,
  registry: UpstreamRegistry,
): Promise<{ ok: true; compiled: CompiledConfig } | { ok: false; errors: ConfigError[] }> {
  const loaded = path === null ? validateConfig(structuredClone(EMBEDDED_DEFAULT)) : await loadConfigFile(path);
  if (!loaded.ok) return loaded;
  const res = await compileConfig(loaded.config, registry, { disposers: [] });
  if (path === null && res.ok) res.compiled.noRouteMessage = EMBEDDED_DEFAULT_404;
  return res;
}

/**
 * Keys that take effect only on restart: the listeners, the workers and what is fixed when
 * they open (SPEC §2.7). `tls` stands for the presence of the section (TLS on or off).
 */
export const RESTART_KEYS = [
  "proxy.listen",
  "proxy.http3Listen",
  "proxy.enableHTTP3",
  "proxy.enableH2C",
  "proxy.workers",
  "proxy.server.idleTimeoutSec",
  "proxy.server.sendLowWatermarkBytes",
  "admin.listen",
  "tls",
  "telemetry.otlpEndpoint",
  "telemetry.protocol",
] as const;

function at(c: unknown, path: string): unknown {
  let v = c;
  for (const k of path.split(".")) v = v === null || typeof v !== "object" ? undefined : (v as Record<string, unknown>)[k];
  return v;
}

function restartKeys(a: Config, b: Config): string[] {
  return RESTART_KEYS.filter((k) => (k === "tls" ? Boolean(a.tls) !== Boolean(b.tls) : at(a, k) !== at(b, k)));
}

/**
 * Set when several workers serve (src/runtime/workers.ts): after the main thread swapped in a
 * new generation, hand it to every worker and resolve once they all serve it, so that a reload
 * answers only when the whole process has changed. Runs inside the reload queue.
 */
export const reloadFanOut: { fn: ((rt: Runtime) => Promise<void>) | null } = { fn: null };

/** The reload in progress (or last finished) per runtime: reloads run one after another. */
const queue = new WeakMap<Runtime, Promise<unknown>>();
/** Runtimes being shut down: reloads are refused. */
const closed = new WeakSet<Runtime>();

/**
 * Reload the config file of `rt` (SIGHUP, POST /admin/reload). Concurrent calls are
 * serialised, so each result's `changed` is relative to the generation it replaced.
 */
export function reload(rt: Runtime, reason: string): Promise<ReloadResult> {
  const prev = queue.get(rt) ?? Promise.resolve();
  const next = prev.then(() => reloadNow(rt, reason));
  queue.set(rt, next.catch(() => undefined));
  return next;
}

/** Refuse further reloads of `rt` and wait for the one in progress (shutdown). */
export async function closeReloads(rt: Runtime): Promise<void> {
  closed.add(rt);
  await queue.get(rt);
}

function failed(rt: Runtime, reason: string, errors: ConfigError[]): ReloadResult {
  rt.lastReload = { at: Date.now(), ok: false, errors: errors.length };
  log("error", "reload failed", { reason, generation: rt.gen.id, errors });
  hooks.reload(false, rt.gen.id);
  return { ok: false, generation: rt.gen.id, errors, changed: { routes: { added: [], removed: [], changed: [] } }, needsRestart: [] };
}

async function reloadNow(rt: Runtime, reason: string): Promise<ReloadResult> {
  if (closed.has(rt)) return failed(rt, reason, [{ path: "", message: "shutting down: reload refused" }]);
  const old = rt.gen;
  // Compiling touches the shared registry (new entries, breaker settings). Remember what it
  // was so that an invalid file changes nothing at all.
  const settings = new Map([...rt.registry.breakers].map(([origin, b]) => [origin, b.settings]));
  const undo = () => {
    for (const [origin, b] of rt.registry.breakers) {
      const was = settings.get(origin);
      if (was) b.settings = was;
    }
    rt.registry.retain(new Set(old.compiled.upstreamUrls.keys()));
  };
  let res: Awaited<ReturnType<typeof loadAndCompile>>;
  try {
    res = await loadAndCompile(rt.configPath, rt.registry);
  } catch (e) {
    // A bug in a compile step must not take the serving generation down with it.
    undo();
    return failed(rt, reason, [{ path: "", message: `internal error while compiling: ${(e as Error).message}` }]);
  }
  if (!res.ok) {
    undo();
    return failed(rt, reason, res.errors);
  }
  if (closed.has(rt)) {
    res.compiled.dispose();
    undo();
    return failed(rt, reason, [{ path: "", message: "shutting down: reload refused" }]);
  }
  const next = res.compiled;
  const before = new Map(old.compiled.routes.map((r) => [r.name, JSON.stringify(r.config)]));
  const after = new Map(next.routes.map((r) => [r.name, JSON.stringify(r.config)]));
  const added = [...after.keys()].filter((n) => !before.has(n));
  const removed = [...before.keys()].filter((n) => !after.has(n));
  const changed = [...after.keys()].filter((n) => before.has(n) && before.get(n) !== after.get(n));
  const needsRestart = restartKeys(old.compiled.config, next.config);
  rt.swap(next);
  if (reloadFanOut.fn !== null) await reloadFanOut.fn(rt);
  rt.lastReload = { at: Date.now(), ok: true, errors: 0 };
  log("info", "reload ok", { reason, generation: rt.gen.id, added, removed, changed, needsRestart });
  hooks.reload(true, rt.gen.id);
  return { ok: true, generation: rt.gen.id, errors: [], changed: { routes: { added, removed, changed } }, needsRestart };
}
