// `GET /admin/explain?method=M&host=H&path=P[&header=Name:value…][&ip=A]` (SPEC §4): what
// would happen to such a request now — which route matches and why the others do not
// (SPEC §3.2), which upstreams are eligible and why not, and which one would be chosen
// (SPEC §3.3–3.5). Nothing is sent upstream and no state moves: selection runs with
// `dryRun`, so no balancer sequence advances, no rate-limit token is taken, no sticky
// marker is issued. (Reading a breaker whose cooldown is over does flip it to half-open, as
// the next real request would — that transition depends on time only.)
import type { Runtime } from "../runtime/runtime.ts";
import type { CompiledRoute } from "../config/compile.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import { normalizeHost, prefixMatches } from "../routing/router.ts";
import { selectUpstream, stickyIdOf, hashKeyOf } from "../upstream/select.ts";
import { ProxyError } from "../errors.ts";
import { adminRoute, json } from "./server.ts";

export interface ExplainQuery {
  method: string;
  host: string;
  path: string;
  headers: Headers;
  /** Client IP (SPEC §3.8) used for hashing; "" when not given. */
  ip: string;
}

export interface RouteVerdict {
  name: string;
  matched: boolean;
  reason: string;
}

export interface UpstreamVerdict {
  url: string;
  eligible: boolean;
  reason: string;
}

export interface Explanation {
  route: string | null;
  routes: RouteVerdict[];
  upstreams: UpstreamVerdict[];
  chosen: string | null;
  /** What else the request would meet (drain, auth, policies, strict stickiness). */
  notes: string[];
  /** The request as understood: normalised host, path without query. */
  request: { method: string; host: string; path: string; ip: string };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parse the query string of an explain request; a string is an error message. */
export function parseExplainQuery(search: URLSearchParams): ExplainQuery | string {
  const method = (search.get("method") ?? "GET").trim() || "GET";
  if (!TOKEN.test(method)) return "method: not an HTTP method token";
  const host = (search.get("host") ?? "").trim();
  if (host === "") return "host: required (the Host header of the request to explain)";
  let path = (search.get("path") ?? "/").trim() || "/";
  if (path.charCodeAt(0) !== 47) return 'path: must start with "/"';
  const q = path.search(/[?#]/);
  if (q >= 0) path = path.slice(0, q) || "/";
  const headers = new Headers();
  for (const h of search.getAll("header")) {
    const colon = h.indexOf(":");
    const name = colon > 0 ? h.slice(0, colon).trim() : "";
    if (!TOKEN.test(name)) return `header: expected "Name: value" (got ${JSON.stringify(h)})`;
    try {
      headers.append(name, h.slice(colon + 1).trim());
    } catch {
      return `header: invalid value for ${name}`;
    }
  }
  const ip = (search.get("ip") ?? "").trim();
  return { method: method.toUpperCase(), host, path, headers, ip };
}

function describeClass(label: string): string {
  return label === "any" ? "any-host" : label.startsWith("*.") ? `wildcard host ${label}` : `exact host ${label}`;
}

/** Route verdicts in precedence order (the order of /admin/routes), and the winner. */
export function explainRoutes(rt: Runtime, host: string, path: string): { route: CompiledRoute | null; routes: RouteVerdict[] } {
  const router = rt.gen.compiled.router;
  const winner = router.match(host, path) ?? null;
  const classes = router.classesFor(host);
  // Rank of each applicable class (0 = best); the route's own best class is its first one here.
  const rankOf = new Map<CompiledRoute, number>();
  const labelOf = new Map<CompiledRoute, string>();
  classes.forEach((cls, i) => {
    for (const r of cls.routes) if (!rankOf.has(r)) (rankOf.set(r, i), labelOf.set(r, cls.label));
  });
  // Classes better than the winner's that were tried and had no matching prefix.
  const winnerRank = winner ? rankOf.get(winner)! : classes.length;
  const winnerLabel = winner ? labelOf.get(winner)! : "";

  const routes = router.ordered.map((r): RouteVerdict => {
    const rank = rankOf.get(r);
    if (rank === undefined)
      return { name: r.name, matched: false, reason: `host mismatch: ${JSON.stringify(host)} is not one of ${r.hosts.map((h) => JSON.stringify(h)).join(", ")}` };
    const label = labelOf.get(r)!;
    if (r === winner) {
      const fellThrough = winnerRank > 0 ? ` after no route of a better host class matched the path` : "";
      return {
        name: r.name,
        matched: true,
        reason: `matched: ${describeClass(label)}, path prefix ${JSON.stringify(r.pathPrefix)} is the longest that matches ${JSON.stringify(path)} in its class${fellThrough}`,
      };
    }
    if (!prefixMatches(r.pathPrefix, path)) return { name: r.name, matched: false, reason: `path prefix mismatch: ${JSON.stringify(r.pathPrefix)} does not match ${JSON.stringify(path)} (${describeClass(label)})` };
    // Host and path both match: it lost to the winner.
    const w = winner!;
    if (rank > winnerRank)
      return { name: r.name, matched: false, reason: `shadowed by ${JSON.stringify(w.name)}: ${describeClass(winnerLabel)} beats ${describeClass(label)}` };
    if (w.pathPrefix.length > r.pathPrefix.length)
      return { name: r.name, matched: false, reason: `shadowed by ${JSON.stringify(w.name)}: longer path prefix ${JSON.stringify(w.pathPrefix)} beats ${JSON.stringify(r.pathPrefix)}` };
    return { name: r.name, matched: false, reason: `shadowed by ${JSON.stringify(w.name)}: same path prefix, earlier in the file` };
  });
  return { route: winner, routes };
}

/** Why an upstream can or cannot take a request now (pure reads; no breaker transition). */
function eligibility(t: UpstreamTarget, now: number): { eligible: boolean; reason: string } {
  const s = t.state;
  if (!s.healthy) return { eligible: false, reason: `unhealthy: ejected by health checks${s.lastError ? ` (last error: ${s.lastError})` : ""}` };
  const b = s.breaker;
  if (b.settings.enabled) {
    if (b.state === "open") {
      const left = b.settings.cooldownMs - (now - b.openedAt);
      if (left > 0) return { eligible: false, reason: `breaker open for ${b.origin}: ${Math.ceil(left / 1000)} s of cooldown left` };
      return { eligible: true, reason: "healthy; breaker cooldown over: the next request is a half-open trial" };
    }
    if (b.state === "half-open") {
      if (b.trialsInFlight >= b.settings.halfOpenMaxRequests)
        return { eligible: false, reason: `breaker half-open: all ${b.settings.halfOpenMaxRequests} trial slots in use` };
      return { eligible: true, reason: `healthy; breaker half-open (${b.trialsInFlight}/${b.settings.halfOpenMaxRequests} trials in flight)` };
    }
  }
  return { eligible: true, reason: b.settings.enabled ? "healthy, breaker closed" : "healthy (breaker disabled)" };
}

/** Only what selectUpstream and its helpers read from an exchange. */
function fakeExchange(q: ExplainQuery): Exchange {
  return { req: { headers: q.headers }, clientIp: q.ip, tls: false } as unknown as Exchange;
}

export function explain(rt: Runtime, q: ExplainQuery): Explanation {
  const host = normalizeHost(q.host);
  const notes: string[] = [];
  const { route, routes } = explainRoutes(rt, host, q.path);
  const out: Explanation = { route: route?.name ?? null, routes, upstreams: [], chosen: null, notes, request: { method: q.method, host, path: q.path, ip: q.ip } };
  if (rt.draining) notes.push("the proxy is draining: the request would get 503 server is draining");
  if (q.method === "CONNECT") notes.push("CONNECT is refused with 405");
  if (route === null) {
    notes.push("no route matches: the request would get 404 no route");
    return out;
  }
  if (route.config.auth !== undefined) notes.push("the route requires authentication (not checked here)");
  if (route.stages.length > 0 || rt.gen.compiled.globalStages.length > 0) notes.push("limits and policies (ACLs, rate limits) are not evaluated here");

  const now = Date.now();
  const ex = fakeExchange(q);
  let pinned: UpstreamTarget | undefined;
  if (route.sticky !== null) {
    const id = stickyIdOf(ex, route);
    const where = route.sticky.mode === "cookie" ? `cookie ${route.sticky.name}` : `header ${route.sticky.headerName}`;
    if (id !== "") {
      pinned = route.sticky.byId.get(id);
      if (pinned === undefined) notes.push(`sticky id ${JSON.stringify(id)} (${where}) is unknown: ignored`);
      else notes.push(`pinned to ${pinned.url} by ${where}`);
    } else notes.push(`no sticky marker (${where}): the balancer picks and the answer pins`);
  }
  const algorithm = route.balancer.algorithm;
  if (algorithm === "random" || algorithm === "least_request")
    notes.push(`${algorithm} draws at random: "chosen" is one possible pick, another request may go elsewhere`);
  if (route.hashed) {
    const key = hashKeyOf(ex, route);
    notes.push(key === "" ? "consistent hashing with an empty key (pass ip= or the hashKey header/cookie)" : `consistent hashing on ${JSON.stringify(key)}`);
  }

  const pinnedOk = pinned !== undefined && eligibility(pinned, now).eligible;
  for (const t of route.upstreams) {
    const e = eligibility(t, now);
    let reason = e.reason;
    if (pinned !== undefined) {
      if (t === pinned) reason = e.eligible ? `sticky target; ${reason}` : `sticky target, unavailable: ${reason}`;
      else if (e.eligible && pinnedOk) reason = `${reason}; not used: the request is pinned to ${pinned.url}`;
    }
    out.upstreams.push({ url: t.url, eligible: e.eligible, reason });
  }

  const picked = selectUpstream(ex, route, null, now, true);
  if (picked instanceof ProxyError) notes.push(`the request would get ${picked.status} ${picked.message}`);
  else out.chosen = picked.url;
  if (pinned !== undefined && picked !== pinned && !(picked instanceof ProxyError)) notes.push("the pinned upstream is unavailable: re-picked by the balancer (strict: false)");
  return out;
}

adminRoute("/admin/explain", {
  GET: (req, rt) => {
    const q = parseExplainQuery(new URL(req.url).searchParams);
    if (typeof q === "string") return json({ error: q }, 400);
    const r = json(explain(rt, q));
    r.headers.set("cache-control", "no-store");
    return r;
  },
});
