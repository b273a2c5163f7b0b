// Admin listener (SPEC §4): health, readiness, drain, reload, config, routes, upstreams,
// metrics, debug. Admin requests are not counted as in-flight.
import type { Runtime } from "../runtime/runtime.ts";
import { reload } from "../runtime/reload.ts";
import { log } from "../observability/log.ts";

const JSON_HEADERS = { "content-type": "application/json" };
const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" };

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}
export function text(body: string, status = 200, extra?: Record<string, string>): Response {
  return new Response(body.endsWith("\n") ? body : body + "\n", { status, headers: { ...TEXT_HEADERS, ...extra } });
}

export function setDraining(rt: Runtime, on: boolean): void {
  if (rt.draining === on) return;
  rt.draining = on;
  log("info", on ? "drain on" : "drain off", { inflight: rt.inflight });
}

type Route = { [method: string]: (req: Request, rt: Runtime) => Response | Promise<Response> };

const routes: Record<string, Route> = {
  "/healthz": { GET: () => text("ok") },
  "/readyz": { GET: (_q, rt) => (rt.draining ? text("draining", 503) : text("ready")) },
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
};

/** Register (or replace) an admin endpoint; used by the modules that own them. */
export function adminRoute(path: string, methods: Route): void {
  routes[path] = { ...routes[path], ...methods };
}

/** Paths exempt from auth. */
const OPEN = new Set(["/healthz", "/readyz"]);

/** Set by the auth module: returns a 401 Response, or undefined when authorised. */
export const adminAuth = { check: (_req: Request, _rt: Runtime): Response | undefined => undefined };

export function createAdminHandler(rt: Runtime) {
  return (req: Request): Response | Promise<Response> => {
    const url = req.url;
    let p = url.indexOf("/", url.indexOf("//") + 2);
    if (p < 0) p = url.length;
    const q = url.indexOf("?", p);
    const path = p === url.length ? "/" : q < 0 ? url.slice(p) : url.slice(p, q);
    if (!OPEN.has(path)) {
      const denied = adminAuth.check(req, rt);
      if (denied) return denied;
    }
    const route = routes[path];
    if (!route) return text("not found", 404);
    const h = route[req.method] ?? (req.method === "HEAD" ? route.GET : undefined);
    if (!h) return text("method not allowed", 405, { allow: Object.keys(route).join(", ") });
    return h(req, rt);
  };
}
