// Rate-limit stages (SPEC §2.4 rateLimit / paths, §3.1 stages 3, 4, 7, §3.9).
//
// Rule names (the `<rule>` of the RateLimit fields): `limits` (proxy.limits, one bucket for all
// public traffic), `global` (proxy.policy.rateLimit), `<route>` (route policy) and
// `<route>-path-<i>` (route policy.paths[i]). Keyed rules hold one bucket per key value, not
// per path. A request without the configured header/cookie is keyed by its client IP.
import type { Exchange } from "../pipeline/exchange.ts";
import type { Stage } from "../pipeline/stage.ts";
import type { ConfigError } from "../config/load.ts";
import type { RateLimitConfig } from "../config/schema.ts";
import { textResponse } from "../errors.ts";
import { prefixMatches } from "../routing/router.ts";
import { rateSpec, TokenBucket, type RateSpec, type TakeResult } from "./token-bucket.ts";
import { MemoryRateLimiterStore, acquireStore, type RateLimiterStore } from "./rate-limiter-store.ts";
import { deny } from "./deny.ts";
import { sharedStoreFor } from "./shared-store.ts";

export type KeyFn = (ex: Exchange) => string;

export interface RateLimitRule {
  readonly name: string;
  readonly spec: RateSpec;
  readonly store: RateLimiterStore;
  readonly keyOf: KeyFn;
  /** Precomputed `RateLimit-Policy` value. */
  readonly policyHeader: string;
}

/** Keys of the client-IP fallback can never collide with a header/cookie value (no NUL there). */
const IP_FALLBACK = "\u0000";

/** Value of cookie `name` (case-sensitive) in a Cookie header, or null. */
export function cookieValue(header: string | null, name: string): string | null {
  if (header === null) return null;
  const n = header.length;
  let i = 0;
  while (i < n) {
    let c = header.charCodeAt(i);
    // ";" separates cookies; "," appears when several Cookie fields were joined (a comma is not a
    // cookie-octet in RFC 6265, so it never occurs inside a value)
    while (i < n && (c === 32 || c === 9 || c === 59 || c === 44)) c = header.charCodeAt(++i);
    if (i >= n) break;
    let end = i;
    while (end < n) {
      const d = header.charCodeAt(end);
      if (d === 59 || d === 44) break;
      end++;
    }
    if (header.charCodeAt(i + name.length) === 61 /* = */ && header.startsWith(name, i)) {
      let v = header.slice(i + name.length + 1, end).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1);
      return v;
    }
    i = end + 1;
  }
  return null;
}

/** Compile a `key` setting (`ip` | `header:<Name>` | `cookie:<Name>`; the schema checked it). */
export function keyFunction(key: string): KeyFn {
  if (key.startsWith("header:")) {
    const name = key.slice(7).toLowerCase();
    return (ex) => {
      const v = ex.req.headers.get(name);
      return v === null || v === "" ? IP_FALLBACK + ex.clientIp : v;
    };
  }
  if (key.startsWith("cookie:")) {
    const name = key.slice(7);
    return (ex) => {
      const v = cookieValue(ex.req.headers.get("cookie"), name);
      return v === null || v === "" ? IP_FALLBACK + ex.clientIp : v;
    };
  }
  return (ex) => ex.clientIp;
}

export function policyHeaderOf(name: string, s: RateSpec): string {
  return `"${name}";q=${s.burst};w=${s.windowSec}`;
}

/** 429 with Retry-After and the IETF RateLimit fields. */
export function tooManyRequests(ex: Exchange, policy: "limits" | "rate_limit", name: string, policyHeader: string, r: TakeResult): Response {
  deny(ex, policy);
  ex.note = name;
  const t = String(r.retryAfterSec);
  return textResponse(429, "too many requests", ex.requestId, {
    "retry-after": t,
    "ratelimit-policy": policyHeader,
    ratelimit: `"${name}";r=0;t=${t}`,
  });
}

export interface CompileCtx {
  errors: ConfigError[];
  disposers: (() => void)[];
  /** Identity of the runtime whose state outlives generations. */
  owner?: object;
  /**
   * Set when keyed rules keep their buckets in a store shared by instances (`policy.store`,
   * §3.10): makes the store of one rule. Null/absent: in-memory buckets.
   */
  sharedStore?: ((name: string, spec: RateSpec) => RateLimiterStore) | null;
}

/** Build a keyed rule; its store is shared with the previous generation when unchanged. */
export function compileRule(name: string, cfg: RateLimitConfig, ctx: CompileCtx): RateLimitRule {
  const spec = rateSpec(cfg.rps, cfg.burst);
  if (ctx.sharedStore) return { name, spec, store: ctx.sharedStore(name, spec), keyOf: keyFunction(cfg.key), policyHeader: policyHeaderOf(name, spec) };
  const id = `rule ${name} ${spec.rps} ${spec.burst} ${cfg.key}`;
  const held = acquireStore(ctx.owner, id, () => sharedStoreFor(id, spec) ?? new MemoryRateLimiterStore(spec));
  ctx.disposers.push(held.release);
  return { name, spec, store: held.store, keyOf: keyFunction(cfg.key), policyHeader: policyHeaderOf(name, spec) };
}

function check(ex: Exchange, rule: RateLimitRule, r: TakeResult): Response | undefined {
  return r.ok ? undefined : tooManyRequests(ex, "rate_limit", rule.name, rule.policyHeader, r);
}

/** A keyed rate-limit stage. */
export function rateLimitStage(rule: RateLimitRule): Stage {
  return (ex) => {
    const r = rule.store.take(rule.keyOf(ex), performance.now());
    if (r instanceof Promise) return r.then((res) => check(ex, rule, res));
    return r.ok ? undefined : check(ex, rule, r);
  };
}

/**
 * Route rate limit with `paths` overrides: the longest matching `pathPrefix` (against the path
 * as received, at a segment boundary like routes[].pathPrefix) replaces the route's rule.
 */
export function pathRateLimitStage(routeRule: RateLimitRule | null, paths: { prefix: string; rule: RateLimitRule }[]): Stage {
  const sorted = [...paths].sort((a, b) => b.prefix.length - a.prefix.length);
  return (ex) => {
    let rule = routeRule;
    for (let i = 0; i < sorted.length; i++) {
      if (prefixMatches(sorted[i]!.prefix, ex.path)) {
        rule = sorted[i]!.rule;
        break;
      }
    }
    if (rule === null) return undefined;
    const r = rule.store.take(rule.keyOf(ex), performance.now());
    if (r instanceof Promise) return r.then((res) => check(ex, rule, res));
    return r.ok ? undefined : check(ex, rule, r);
  };
}

/** The global `proxy.limits` bucket (stage 3); shared across reloads while rps/burst are unchanged. */
export function limitsStage(rps: number, burst: number | undefined, ctx: CompileCtx): Stage {
  const spec = rateSpec(rps, burst);
  const limitsId = `limits ${spec.rps} ${spec.burst}`;
  const held = acquireStore(ctx.owner, limitsId, () => sharedStoreFor(limitsId, spec) ?? new SingleBucketStore(spec));
  ctx.disposers.push(held.release);
  const store = held.store;
  const header = policyHeaderOf("limits", spec);
  return (ex) => {
    const r = store.take("", performance.now()) as TakeResult;
    return r.ok ? undefined : tooManyRequests(ex, "limits", "limits", header, r);
  };
}

/** One bucket behind the store interface, so it can be held across reloads like the others. */
class SingleBucketStore implements RateLimiterStore {
  private readonly bucket: TokenBucket;
  readonly size = 1;
  constructor(spec: RateSpec) {
    this.bucket = new TokenBucket(spec);
  }
  take(_key: string, now: number): TakeResult {
    return this.bucket.take(now);
  }
  close(): void {}
}
