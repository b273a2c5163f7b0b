// Validated Config → CompiledConfig: the route table, upstream targets, balancers, header
// operations and the stage lists, built once per generation. Its input has passed
// validateConfig (schema + whole-config checks in load.ts); what only compiling can find
// (CIDRs, upstream URLs, policy databases, certificates) is reported here like schema errors,
// with key paths.
import type { Config, RouteConfig, RetryConfig } from "./schema.ts";
import type { ConfigError } from "./load.ts";
import { Router } from "../routing/router.ts";
import { parseUpstreamUrl, stickyIdFor, type UpstreamTarget } from "../upstream/target.ts";
import type { UpstreamRegistry } from "../upstream/registry.ts";
import type { BreakerSettings } from "../upstream/breaker.ts";
import type { Balancer } from "../upstream/balancers/balancer.ts";
import { buildBalancer } from "../upstream/balancers/index.ts";
import { CidrSet } from "../policy/ip.ts";
import { parseListen, type ListenAddress } from "./listen.ts";
export { parseListen, type ListenAddress };
import type { Stage } from "../pipeline/stage.ts";
import { buildGlobalStages, buildRouteStages, type StageContext } from "../pipeline/stages/index.ts";
import { compileTls, type CompiledTls } from "../tls/compile-tls.ts";

export interface RetrySettings {
  maxRetries: number;
  perTryTimeoutMs: number; // 0 = none
  retryOn5xx: boolean;
  retryOnConnectErr: boolean;
  retryIdempotent: boolean;
  backoffBaseMs: number;
  backoffMaxMs: number;
  retryBufferBytes: number;
}

export interface StickySettings {
  mode: "cookie" | "header";
  /** Cookie name, or the header name in lower case. */
  name: string;
  /** Header name as configured (for the response). */
  headerName: string;
  ttlSeconds: number;
  strict: boolean;
  /** sticky id → target */
  byId: Map<string, UpstreamTarget>;
}

export interface CompiledRoute {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly pathPrefix: string;
  readonly stripPrefix: boolean;
  readonly order: number;
  readonly upstreams: readonly UpstreamTarget[];
  readonly balancer: Balancer;
  /** consistent hashing: cookie / header name ("" = client IP) */
  readonly hashKey: string;
  readonly hashed: boolean;
  readonly sticky: StickySettings | null;
  readonly retry: RetrySettings;
  readonly timeoutMs: number;
  /** Route stages (auth, policy), in order. */
  readonly stages: readonly Stage[];
  readonly reqSet: readonly [string, string][];
  readonly reqRemove: readonly string[];
  readonly respSet: readonly [string, string][];
  readonly respRemove: readonly string[];
  /** No response header ops and no sticky marker: a response's head is the upstream's plus Hecate's fields. */
  readonly plainResponses: boolean;
  readonly config: RouteConfig;
}

export interface CompiledConfig {
  readonly config: Config;
  readonly router: Router<CompiledRoute>;
  readonly routes: readonly CompiledRoute[];
  /** Global stages: limits bucket, then global policy. */
  readonly globalStages: readonly Stage[];
  readonly trusted: CidrSet;
  /** lower-case header name; "" = X-Forwarded-For */
  readonly clientIPHeader: string;
  readonly bodyBytesCap: number;
  readonly headerBytesCap: number;
  readonly maxHeaderBytes: number;
  readonly listen: ListenAddress;
  readonly adminListen: ListenAddress;
  /** Every distinct upstream URL → one representative target (health checks, admin). */
  readonly upstreamUrls: ReadonlyMap<string, { target: UpstreamTarget; routes: string[] }>;
  /** Body of the 404 when no route matches ("no route"; the embedded default says how to pass a config). */
  noRouteMessage: string;
  /** TLS material for the public listeners (src/tls/compile-tls.ts); null = plain HTTP. */
  readonly tls: CompiledTls | null;
  /** Release timers and handles owned by this generation. */
  dispose(): void;
}

export type CompileResult = { ok: true; compiled: CompiledConfig } | { ok: false; errors: ConfigError[] };

export function mergeRetry(global: RetryConfig, route: Partial<RetryConfig> | undefined): RetrySettings {
  const r = { ...global };
  if (route) for (const [k, val] of Object.entries(route)) if (val !== undefined) (r as Record<string, unknown>)[k] = val;
  return {
    maxRetries: r.maxRetries,
    perTryTimeoutMs: Math.round(r.perTryTimeoutSec * 1000),
    retryOn5xx: r.retryOn5xx,
    retryOnConnectErr: r.retryOnConnectErr,
    retryIdempotent: r.retryIdempotent,
    backoffBaseMs: r.backoffBaseMs,
    backoffMaxMs: r.backoffMaxMs,
    retryBufferBytes: r.retryBufferBytes,
  };
}

export async function compileConfig(config: Config, registry: UpstreamRegistry, ctx: Omit<StageContext, "errors">): Promise<CompileResult> {
  const errors: ConfigError[] = [];
  const p = config.proxy;

  // Listen addresses, TLS pairing, HTTP/3 without TLS, duplicate route names, host patterns
  // and the Maglev prime are validated before compile (schema.ts, load.ts): read them as valid.
  const listen = parseListen(p.listen)!;
  const adminListen = parseListen(config.admin.listen)!;
  if (p.limits.burst !== undefined && p.limits.rps === 0) errors.push({ path: "proxy.limits.burst", message: "has no effect without proxy.limits.rps" });
  if (p.retry.backoffMaxMs < p.retry.backoffBaseMs) errors.push({ path: "proxy.retry.backoffMaxMs", message: `must be ≥ backoffBaseMs (${p.retry.backoffMaxMs} < ${p.retry.backoffBaseMs})` });

  const trusted = new CidrSet();
  p.trustedProxies.forEach((c, i) => {
    const e = trusted.add(c);
    if (e) errors.push({ path: `proxy.trustedProxies[${i}]`, message: e });
  });

  const breaker: BreakerSettings = {
    enabled: p.circuitBreaker.enabled,
    openAfterConsecutiveFailures: p.circuitBreaker.openAfterConsecutiveFailures,
    cooldownMs: Math.round(p.circuitBreaker.cooldownSec * 1000),
    halfOpenMaxRequests: p.circuitBreaker.halfOpenMaxRequests,
  };

  const stageCtx: StageContext = { owner: registry, ...ctx, errors };
  const routes: CompiledRoute[] = [];
  const upstreamUrls = new Map<string, { target: UpstreamTarget; routes: string[] }>();

  for (let i = 0; i < p.routes.length; i++) {
    const rc = p.routes[i]!;
    const at = `proxy.routes[${i}]`;

    const targets: UpstreamTarget[] = [];
    rc.upstreams.forEach((u, j) => {
      const url = typeof u === "string" ? u : u.url;
      const weight = typeof u === "string" ? 1 : u.weight;
      let parsed: ReturnType<typeof parseUpstreamUrl>;
      try {
        parsed = parseUpstreamUrl(url);
      } catch {
        errors.push({ path: `${at}.upstreams[${j}]`, message: `invalid URL ${JSON.stringify(url)}` });
        return;
      }
      if (targets.some((t) => t.url === url)) {
        errors.push({ path: `${at}.upstreams[${j}]`, message: `duplicate upstream ${JSON.stringify(url)} (use weight instead)` });
        return;
      }
      const state = registry.get(url, parsed.origin, breaker);
      const t: UpstreamTarget = {
        url,
        origin: parsed.origin,
        https: parsed.https,
        hostname: parsed.hostname,
        port: parsed.port,
        basePath: parsed.basePath,
        weight,
        stickyId: stickyIdFor(rc.name, url),
        index: targets.length,
        state,
      };
      targets.push(t);
      const seen = upstreamUrls.get(url);
      if (seen) seen.routes.push(rc.name);
      else upstreamUrls.set(url, { target: t, routes: [rc.name] });
    });

    const lb = rc.lb;
    const hashed = lb.algorithm === "consistent_hash" || lb.algorithm === "maglev";
    if (hashed && lb.maglevTableSize < targets.length * 100)
      errors.push({ path: `${at}.lb.maglevTableSize`, message: `must be at least 100× the number of upstreams` });

    const st = rc.stickiness;
    const sticky: StickySettings | null = st.enabled
      ? {
          mode: st.mode,
          name: st.mode === "cookie" ? st.cookieName || `hecate_sticky_${rc.name}` : st.headerName.toLowerCase(),
          headerName: st.headerName,
          ttlSeconds: st.ttlSeconds,
          strict: st.strict,
          byId: new Map(targets.map((t) => [t.stickyId, t])),
        }
      : null;

    const retry = mergeRetry(p.retry, rc.retry);
    // Reported for the route only when the route sets a backoff key (else the global error says it).
    const ownBackoff = rc.retry?.backoffBaseMs !== undefined || rc.retry?.backoffMaxMs !== undefined;
    if (ownBackoff && retry.backoffMaxMs < retry.backoffBaseMs)
      errors.push({ path: `${at}.retry.backoffMaxMs`, message: `must be ≥ backoffBaseMs (${retry.backoffMaxMs} < ${retry.backoffBaseMs})` });

    const stages = await buildRouteStages(rc, i, config, stageCtx);
    const lower = (rec: Record<string, string>) => Object.entries(rec).map(([k, val]) => [k.toLowerCase(), val] as [string, string]);
    routes.push({
      name: rc.name,
      hosts: rc.hosts.map((h) => h.toLowerCase()),
      pathPrefix: rc.pathPrefix,
      stripPrefix: rc.stripPrefix,
      order: i,
      upstreams: targets,
      balancer: buildBalancer(lb.algorithm, targets, lb.maglevTableSize),
      hashKey: lb.hashKey,
      hashed,
      sticky,
      retry,
      timeoutMs: Math.round(rc.timeoutSec * 1000),
      stages,
      reqSet: lower(rc.headers.request.set),
      reqRemove: rc.headers.request.remove.map((h) => h.toLowerCase()),
      respSet: lower(rc.headers.response.set),
      respRemove: rc.headers.response.remove.map((h) => h.toLowerCase()),
      plainResponses: sticky === null && rc.headers.response.remove.length === 0 && Object.keys(rc.headers.response.set).length === 0,
      config: rc,
    });
  }

  const globalStages = await buildGlobalStages(config, stageCtx);
  const tls = await compileTls(config, errors);

  if (errors.length > 0) {
    stageCtx.disposers.forEach((d) => d());
    return { ok: false, errors };
  }

  const disposers = stageCtx.disposers;
  const compiled: CompiledConfig = {
    config,
    router: new Router(routes),
    routes,
    globalStages,
    trusted,
    clientIPHeader: p.limits.clientIPHeader.toLowerCase(),
    bodyBytesCap: p.limits.bodyBytesCap,
    headerBytesCap: p.limits.headerBytesCap,
    maxHeaderBytes: p.server.maxHeaderBytes,
    listen,
    adminListen,
    upstreamUrls,
    noRouteMessage: "no route",
    tls,
    dispose() {
      for (const d of disposers.splice(0)) d();
    },
  };
  return { ok: true, compiled };
}
