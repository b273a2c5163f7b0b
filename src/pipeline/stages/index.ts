// Stage factories: build the global and per-route stage lists of a generation (SPEC §3.1).
// Global: limits bucket (3) → global policy ipAcl → geoIp → asn → rateLimit (4).
// Route: auth (6) → route policy ipAcl → geoIp → asn → rateLimit with paths overrides (7).
// Each factory validates what it needs, pushes errors with key paths, and registers
// disposers for anything it holds (timers, db handles). The order of the lists IS the order of
// SPEC §3.1, which is also what guarantees that a request rejected by an earlier stage takes no
// token from a later bucket.
import type { Config, RouteConfig } from "../../config/schema.ts";
import type { ConfigError } from "../../config/load.ts";
import type { Stage } from "../stage.ts";
import type { Reader, Response as MmdbRecord } from "maxmind";
import { ipAclStage } from "../../policy/ip-acl.ts";
import { geoIpStage, asnStage } from "../../policy/geo.ts";
import { compileRule, rateLimitStage, pathRateLimitStage, limitsStage, type RateLimitRule } from "../../policy/rate-limit.ts";
import { compileAuth, authStage } from "../../policy/auth.ts";
import { registerAdminAuth, ADMIN_REALM } from "../../policy/admin-auth.ts";
import { redisStoreFactory } from "../../policy/redis-store.ts";
import type { RateSpec } from "../../policy/token-bucket.ts";
import type { RateLimiterStore } from "../../policy/rate-limiter-store.ts";

export interface StageContext {
  errors: ConfigError[];
  /** Called when the generation is replaced or the compile fails. */
  disposers: (() => void)[];
  /**
   * Identity of the runtime whose state outlives generations (rate-limit buckets are kept
   * across reloads per owner). compile.ts passes the upstream registry.
   */
  owner?: object;
  /** .mmdb files opened during this compile, by absolute path (filled by the geo factories). */
  mmdb?: Map<string, Promise<Reader<MmdbRecord> | string>>;
  /** Keyed rules' store when `proxy.policy.store` is set (null: in memory); see useSharedStore. */
  sharedStore?: ((name: string, spec: RateSpec) => RateLimiterStore) | null;
}

/**
 * `proxy.policy.store` (§2.4, §3.10): keyed rules (global, route and paths rate limits) keep
 * their buckets in Redis; the `limits` bucket stays local. Decided once per compile.
 */
function useSharedStore(config: Config, ctx: StageContext): void {
  if (ctx.sharedStore !== undefined) return;
  const store = config.proxy.policy?.store;
  ctx.sharedStore = store ? redisStoreFactory(store, ctx) : null;
}

type PolicyBlock = {
  ipAcl?: { allowCidrs: string[]; denyCidrs: string[] };
  geoIp?: Parameters<typeof geoIpStage>[0];
  asn?: Parameters<typeof asnStage>[0];
};

/** ipAcl → geoIp → asn of one policy block (rate limit is added by the caller). */
async function accessStages(policy: PolicyBlock, at: string, ctx: StageContext): Promise<Stage[]> {
  const out: Stage[] = [];
  const mmdb = (ctx.mmdb ??= new Map());
  if (policy.ipAcl) {
    const s = ipAclStage(policy.ipAcl, `${at}.ipAcl`, ctx.errors);
    if (s) out.push(s);
  }
  if (policy.geoIp) {
    const s = await geoIpStage(policy.geoIp, `${at}.geoIp`, ctx.errors, mmdb);
    if (s) out.push(s);
  }
  if (policy.asn) {
    const s = await asnStage(policy.asn, `${at}.asn`, ctx.errors, mmdb);
    if (s) out.push(s);
  }
  return out;
}

export async function buildGlobalStages(config: Config, ctx: StageContext): Promise<Stage[]> {
  registerAdminAuth(config, compileAuth(config.admin.auth, "admin.auth", ADMIN_REALM, ctx.errors));
  const stages: Stage[] = [];
  const limits = config.proxy.limits;
  if (limits.rps > 0) stages.push(limitsStage(limits.rps, limits.burst, ctx));
  const policy = config.proxy.policy;
  useSharedStore(config, ctx);
  if (policy) {
    stages.push(...(await accessStages(policy, "proxy.policy", ctx)));
    if (policy.rateLimit) stages.push(rateLimitStage(compileRule("global", policy.rateLimit, ctx)));
  }
  return stages;
}

export async function buildRouteStages(route: RouteConfig, index: number, config: Config, ctx: StageContext): Promise<Stage[]> {
  useSharedStore(config, ctx);
  const at = `proxy.routes[${index}]`;
  const stages: Stage[] = [];
  const auth = compileAuth(route.auth, `${at}.auth`, "hecate", ctx.errors);
  if (auth) stages.push(authStage(auth));
  const policy = route.policy;
  if (policy) {
    stages.push(...(await accessStages(policy, `${at}.policy`, ctx)));
    const routeRule: RateLimitRule | null = policy.rateLimit ? compileRule(route.name, policy.rateLimit, ctx) : null;
    const paths = policy.paths.map((p, i) => ({ prefix: p.pathPrefix, rule: compileRule(`${route.name}-path-${i}`, p.rateLimit, ctx) }));
    if (paths.length > 0) stages.push(pathRateLimitStage(routeRule, paths));
    else if (routeRule) stages.push(rateLimitStage(routeRule));
  }
  return stages;
}
