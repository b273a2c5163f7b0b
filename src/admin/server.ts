// Admin listener (SPEC §4): health, readiness, drain, reload, config, routes, upstreams,
// metrics, debug. Admin requests are not counted as in-flight.
import type { Runtime } from "../runtime/runtime.ts";
import { reload } from "../runtime/reload.ts";
import { log } from "../observability/log.ts";
import { checkAdminAuth } from "../policy/admin-auth.ts";

import { json, text } from "./respond.ts";
import { configView } from "./config-view.ts";
import { listRoutes, listUpstreams } from "./inventory.ts";
import { debugVars, pprofIndex, cpuProfile, heapSnapshot } from "./debug.ts";

export { json, text };

export function setDraining(rt: Runtime, on: boolean): void {
  if (rt.draining === on) return;
  rt.draining = on;
  log("info", on ? "drain on" : "drain off", { inflight: rt.inflight });
}

type Route = { [method: string]: (req: Request, rt: Runtime) => Response | Promise<Response> };

const routes: Record<string, Route> = {
  "/healthz": { GET: () => text("ok") },
  "/readyz": { GET: (_q, rt) => (rt.draining ? text("draining", 503) : rt.ready ? text("ready") : text("starting", 503)) },
  "/admin/drain": {
    GET: (_q, rt) => json({ draining: rt.draining, inflight: rt.inflight }),
    PUT: async (req, rt) => {
      const body = (await req.text()).trim().toLowerCase();
      if (body !== "on" && body !== "off") return text('body must be "on" or "off"', 400);
      setDraining(rt, body === "on");
      return json({ draining: rt.draining });
    },
    POST: (_q, rt) => (setDraining(rt, true), json({ draining: true })),
  },
  "/admin/undrain": { POST: (_q, rt) => (setDraining(rt, false), json({ draining: false })) },
  "/admin/reload": {
    POST: async (_q, rt) => {
      const r = await reload(rt, "admin");
      if (!r.ok) return json({ errors: r.errors }, 400);
      return json({ generation: r.generation, changed: r.changed, needsRestart: r.needsRestart });
    },
  },
  "/admin/config": { GET: (_q, rt) => json(configView(rt.gen.compiled.config)) },
  "/admin/routes": { GET: (_q, rt) => json(listRoutes(rt)) },
  "/admin/upstreams": { GET: (_q, rt) => json(listUpstreams(rt)) },
  // Until the metrics module registers the real one: an empty, valid exposition.
  "/metrics": { GET: () => new Response("", { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }) },
  "/debug/vars": { GET: (_q, rt) => debugVars(rt) },
  "/debug/pprof/": { GET: () => pprofIndex() },
  "/debug/pprof": { GET: () => pprofIndex() },
  "/debug/pprof/profile": { GET: (req) => cpuProfile(req) },
  "/debug/pprof/heap": { GET: () => heapSnapshot() },
};

/** Register (or replace) an admin endpoint; used by the modules that own them. */
export function adminRoute(path: string, methods: Route): void {
  routes[path] = { ...routes[path], ...methods };
}

/** Paths exempt from auth. */
const OPEN = new Set(["/healthz", "/readyz"]);

/** Set by the auth module: returns a 401 Response, or undefined when authorised. */
export const adminAuth = {
  check: (req: Request, rt: Runtime): Response | undefined | Promise<Response | undefined> => checkAdminAuth(req, rt),
};

export function createAdminHandler(rt: Runtime) {
  return (req: Request): Response | Promise<Response> => {
    const url = req.url;
    let p = url.indexOf("/", url.indexOf("//") + 2);
    if (p < 0) p = url.length;
    const q = url.indexOf("?", p);
    const path = p === url.length ? "/" : q < 0 ? url.slice(p) : url.slice(p, q);
    if (!OPEN.has(path)) {
      const denied = adminAuth.check(req, rt);
      if (denied instanceof Promise) return denied.then((d) => d ?? dispatch(req, rt, path));
      if (denied) return denied;
    }
    return dispatch(req, rt, path);
  };
}

function dispatch(req: Request, rt: Runtime, path: string): Response | Promise<Response> {
  const route = routes[path];
  if (!route) return text("not found", 404);
  const h = route[req.method] ?? (req.method === "HEAD" ? route.GET : undefined);
  if (!h) {
    const allow = Object.keys(route);
    if (route.GET && !route.HEAD) allow.push("HEAD");
    return text("method not allowed", 405, { allow: allow.join(", ") });
  }
  return h(req, rt);
}
