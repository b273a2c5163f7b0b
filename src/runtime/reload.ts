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

export async function loadAndCompile(
  path: string | null,
  registry: UpstreamRegistry,
): Promise<{ ok: true; compiled: CompiledConfig } | { ok: false; errors: ConfigError[] }> {
  const loaded = path === null ? validateConfig(structuredClone(EMBEDDED_DEFAULT)) : await loadConfigFile(path);
  if (!loaded.ok) return loaded;
  return compileConfig(loaded.config, registry, { disposers: [] });
}

/** Keys that only take effect on restart: listeners and workers. */
function restartKeys(a: Config, b: Config): string[] {
  const out: string[] = [];
  if (a.proxy.listen !== b.proxy.listen) out.push("proxy.listen");
  if (a.proxy.http3Listen !== b.proxy.http3Listen) out.push("proxy.http3Listen");
  if (a.proxy.enableHTTP3 !== b.proxy.enableHTTP3) out.push("proxy.enableHTTP3");
  if (a.proxy.enableH2C !== b.proxy.enableH2C) out.push("proxy.enableH2C");
  if (a.proxy.workers !== b.proxy.workers) out.push("proxy.workers");
  if (a.admin.listen !== b.admin.listen) out.push("admin.listen");
  if (Boolean(a.tls) !== Boolean(b.tls)) out.push("tls");
  if (a.telemetry.otlpEndpoint !== b.telemetry.otlpEndpoint || a.telemetry.protocol !== b.telemetry.protocol) out.push("telemetry.otlpEndpoint");
  return out;
}

export async function reload(rt: Runtime, reason: string): Promise<ReloadResult> {
  const old = rt.gen;
  const res = await loadAndCompile(rt.configPath, rt.registry);
  if (!res.ok) {
    rt.lastReload = { at: Date.now(), ok: false, errors: res.errors.length };
    log("error", "reload failed", { reason, errors: res.errors });
    hooks.reload(false, old.id);
    return { ok: false, generation: old.id, errors: res.errors, changed: { routes: { added: [], removed: [], changed: [] } }, needsRestart: [] };
  }
  const next = res.compiled;
  const before = new Map(old.compiled.routes.map((r) => [r.name, JSON.stringify(r.config)]));
  const after = new Map(next.routes.map((r) => [r.name, JSON.stringify(r.config)]));
  const added = [...after.keys()].filter((n) => !before.has(n));
  const removed = [...before.keys()].filter((n) => !after.has(n));
  const changed = [...after.keys()].filter((n) => before.has(n) && before.get(n) !== after.get(n));
  const needsRestart = restartKeys(old.compiled.config, next.config);
  rt.swap(next);
  rt.lastReload = { at: Date.now(), ok: true, errors: 0 };
  log("info", "reload ok", { reason, generation: rt.gen.id, added, removed, changed, needsRestart });
  hooks.reload(true, rt.gen.id);
  return { ok: true, generation: rt.gen.id, errors: [], changed: { routes: { added, removed, changed } }, needsRestart };
}
