// Upstream selection for one attempt (SPEC §3.3, §3.4): sticky marker first, then the route's
// balancer (keyed by cookie/header/client IP for consistent hashing).
import { ProxyError } from "../errors.ts";
import type { CompiledRoute, StickySettings } from "../config/compile.ts";
import type { UpstreamTarget } from "./target.ts";
import type { Exchange } from "../pipeline/exchange.ts";

/**
 * Value of cookie `name` in a Cookie header, or "" (names are case-sensitive). Reads pairs as
 * the rate limiter's cookieValue does (test/fuzz/cookie.test.ts holds both to one reference):
 * pieces end at ";" or "," (joined Cookie fields), and a piece without "=" hides nothing.
 */
export function getCookie(header: string | null, name: string): string {
  if (header === null) return "";
  const n = header.length;
  let i = 0;
  while (i < n) {
    let c = header.charCodeAt(i);
    while (i < n && (c === 32 || c === 9 || c === 59 || c === 44)) c = header.charCodeAt(++i);
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
  return "";
}

/** The hash key of a request for consistent hashing: cookie, else header, else client IP. */
export function hashKeyOf(ex: Exchange, route: CompiledRoute): string {
  if (route.hashKey !== "") {
    const c = getCookie(ex.req.headers.get("cookie"), route.hashKey);
    if (c !== "") return c;
    const h = ex.req.headers.get(route.hashKey);
    if (h !== null && h !== "") return h;
  }
  return ex.clientIp;
}

/** The sticky id the request carries ("" when none). */
export function stickyIdOf(ex: Exchange, route: CompiledRoute): string {
  const s = route.sticky!;
  return s.mode === "cookie" ? getCookie(ex.req.headers.get("cookie"), s.name) : (ex.req.headers.get(s.name) ?? "");
}

/**
 * Choose the upstream for the next attempt. `tried` lists the upstreams already used by this
 * request (retries prefer others). Returns a ProxyError when none can be used.
 */
export function selectUpstream(ex: Exchange, route: CompiledRoute, tried: readonly UpstreamTarget[] | null, now: number, dryRun = false): UpstreamTarget | ProxyError {
  if (route.sticky !== null && tried === null) {
    const id = stickyIdOf(ex, route);
    if (id !== "") {
      const pinned = route.sticky.byId.get(id);
      if (pinned !== undefined) {
        if (pinned.state.available(now)) return pinned;
        if (route.sticky.strict) return new ProxyError("sticky_unavailable", "sticky upstream unavailable", { source: "upstream" });
      }
    }
  }
  const picked = route.balancer.pick({ hashKey: route.hashed ? hashKeyOf(ex, route) : "", now }, tried, dryRun);
  return picked ?? new ProxyError("no_healthy_upstream", "no healthy upstream", { source: "upstream" });
}

/** (Re)issue the marker of the upstream that answered (sliding TTL). */
export function issueSticky(ex: Exchange, s: StickySettings, t: UpstreamTarget, h: Headers): void {
  if (s.mode === "header") h.set(s.headerName, t.stickyId);
  else h.append("set-cookie", `${s.name}=${t.stickyId}; Path=/; Max-Age=${s.ttlSeconds}; HttpOnly; SameSite=Lax${ex.tls ? "; Secure" : ""}`);
}
