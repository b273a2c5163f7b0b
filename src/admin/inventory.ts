// GET /admin/routes and GET /admin/upstreams: what the serving generation routes, and the
// live state of every upstream it uses (health, breaker, in-flight, last error).
import type { Runtime } from "../runtime/runtime.ts";
import type { CompiledRoute } from "../config/compile.ts";
import { redactUrl } from "./config-view.ts";

export interface RouteInfo {
  name: string;
  hosts: string[];
  pathPrefix: string;
  stripPrefix: boolean;
  upstreams: { url: string; weight: number }[];
  lb: { algorithm: string; hashKey?: string; maglevTableSize?: number; sticky?: { mode: string; name: string; strict: boolean } };
}

function routeInfo(r: CompiledRoute): RouteInfo {
  const lb: RouteInfo["lb"] = { algorithm: r.config.lb.algorithm };
  if (r.hashed) {
    lb.hashKey = r.hashKey;
    lb.maglevTableSize = r.config.lb.maglevTableSize;
  }
  if (r.sticky) lb.sticky = { mode: r.sticky.mode, name: r.sticky.mode === "cookie" ? r.sticky.name : r.sticky.headerName, strict: r.sticky.strict };
  return {
    name: r.name,
    hosts: [...r.hosts],
    pathPrefix: r.pathPrefix,
    stripPrefix: r.stripPrefix,
    // as configured, minus any credentials in the URL
    upstreams: r.upstreams.map((u) => ({ url: redactUrl(u.url), weight: u.weight })),
    lb,
  };
}

/** Routes in precedence order (SPEC §3.2), as `hecate check` prints them. */
export function listRoutes(rt: Runtime): { routes: RouteInfo[] } {
  return { routes: rt.gen.compiled.router.ordered.map(routeInfo) };
}

export interface UpstreamInfo {
  url: string;
  origin: string;
  routes: string[];
  healthy: boolean;
  breaker: "closed" | "open" | "half-open";
  inflight: number;
  lastError: string;
}

export function listUpstreams(rt: Runtime): { upstreams: UpstreamInfo[] } {
  const out: UpstreamInfo[] = [];
  for (const [url, { target, routes }] of rt.gen.compiled.upstreamUrls) {
    const s = target.state;
    out.push({
      url: redactUrl(url),
      origin: s.origin,
      routes: [...routes],
      healthy: s.healthy,
      breaker: s.breaker.state,
      inflight: s.inflight,
      lastError: s.lastError,
    });
  }
  return { upstreams: out };
}
