// The public request path: the stages of SPEC §3.1 in order, then forward.
import type { Server } from "bun";
import { Exchange } from "./exchange.ts";
import { ProxyError, errorResponse, textResponse } from "../errors.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { forward } from "../upstream/forward.ts";
import { normalizeHost } from "../routing/router.ts";
import { requestFields, requestIdOf } from "./headers.ts";
import { clientIpOf, normalizePeer } from "./client-ip.ts";
import { hooks } from "./hooks.ts";
import { isWebSocketUpgrade, proxyWebSocket } from "../proxy/websocket.ts";

/** Host header value: reg-name or IP literal, optional port. */
export const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(?::\d{0,5})?$/;

/** Bun rejects request heads above ~64 KiB itself (431); below that we count. */
const BUN_HEADER_LIMIT = 65536;

export type Handler = (req: Request, server: Server<unknown>) => Response | Promise<Response>;

/** `proto`: the HTTP version when the listener serves only one ("HTTP/1.1", "HTTP/3"), else "". */
export function createHandler(rt: Runtime, tls: boolean, proto = ""): Handler {
  return function handle(req: Request, server: Server<unknown>): Response | Promise<Response> {
    const start = performance.now();
    const gen = rt.gen;
    const c = gen.compiled;
    const ex = new Exchange(req, server, gen, start, tls);
    ex.proto = proto;
    rt.requests++;
    rt.inflight++;
    const fields = requestFields(req);
    ex.reqFields = fields;
    ex.requestId = requestIdOf(fields);
    const peer = normalizePeer(server.requestIP(req)?.address ?? "");
    ex.peer = peer;
    ex.peerTrusted = c.trusted.size > 0 && c.trusted.hasText(peer);
    ex.clientIp = ex.peerTrusted ? clientIpOf(req, peer, c) : peer;
    hooks.start(ex);

    // 1. bad HTTP that reaches us past Bun's parser
    const url = req.url;
    const hf = fields.host;
    const host = typeof hf === "string" ? hf : null;
    if (host === null || host === "" || host.indexOf(",") >= 0 || !HOST_RE.test(host))
      return reject(ex, rt, new ProxyError("bad_request", host && host.indexOf(",") >= 0 ? "multiple Host fields" : "missing or invalid Host", { source: "downstream" }));
    ex.hostHeader = host;
    ex.host = normalizeHost(host);
    let p = url.indexOf("/", url.indexOf("//") + 2);
    if (p < 0) p = url.length;
    const hash = url.indexOf("#", p);
    if (hash >= 0) return reject(ex, rt, new ProxyError("bad_request", "fragment in request target", { source: "downstream" }));
    const q = url.indexOf("?", p);
    ex.path = p === url.length ? "/" : q < 0 ? url.slice(p) : url.slice(p, q);
    ex.query = q < 0 ? "" : url.slice(q);
    if (ex.method === "CONNECT") return reject(ex, rt, new ProxyError("method_not_allowed", "CONNECT is not supported", { source: "downstream" }), { allow: "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE" });
    if (c.headerBytesCap < BUN_HEADER_LIMIT || c.maxHeaderBytes < BUN_HEADER_LIMIT) {
      let fields = 0;
      let lines = ex.method.length + url.length - p + 11; // "M /t HTTP/1.1\r\n"
      for (const [n, v] of req.headers) {
        fields += n.length + v.length;
        lines += n.length + v.length + 4;
      }
      if (fields > c.headerBytesCap || lines > c.maxHeaderBytes)
        return reject(ex, rt, new ProxyError("header_too_large", "request header fields too large", { source: "downstream" }));
    }

    // 2. drain
    if (rt.draining) return reject(ex, rt, new ProxyError("draining", "server is draining", { source: "internal" }));

    // 3–4. global limits and policy
    const gs = c.globalStages;
    if (gs.length > 0) return runStages(ex, rt, gs, 0, afterGlobal);
    return afterGlobal(ex, rt);
  };
}

function afterGlobal(ex: Exchange, rt: Runtime): Response | Promise<Response> {
  // 5. route
  const route = ex.gen.compiled.router.match(ex.host, ex.path);
  if (route === undefined) return reject(ex, rt, new ProxyError("no_route", ex.gen.compiled.noRouteMessage, { source: "downstream" }));
  ex.route = route;
  // 6–7. route auth and policy
  if (route.stages.length > 0) return runStages(ex, rt, route.stages, 0, toUpstream);
  // 8–9. body cap, select, forward
  return toUpstream(ex, rt);
}

/** Forward (which answers 500 itself on an internal error), or proxy a WebSocket handshake (same stages before it; src/proxy/websocket.ts). */
function toUpstream(ex: Exchange, rt: Runtime): Response | Promise<Response> {
  if (ex.method === "GET" && isWebSocketUpgrade(ex.reqFields!)) return proxyWebSocket(ex, ex.route!, rt);
  return forward(ex, ex.route!, rt);
}

type Next = (ex: Exchange, rt: Runtime) => Response | Promise<Response>;

/** Run stages from index i; stay synchronous while the stages are. */
function runStages(ex: Exchange, rt: Runtime, stages: readonly import("./stage.ts").Stage[], i: number, next: Next): Response | Promise<Response> {
  for (; i < stages.length; i++) {
    const r = stages[i]!(ex);
    if (r instanceof Promise) {
      const at = i;
      return r.then((res) => (res !== undefined ? stopped(ex, rt, res) : runStages(ex, rt, stages, at + 1, next)));
    }
    if (r !== undefined) return stopped(ex, rt, r);
  }
  return next(ex, rt);
}

function stopped(ex: Exchange, rt: Runtime, res: Response): Response {
  ex.status = res.status;
  if (!res.headers.has("x-request-id")) res.headers.set("x-request-id", ex.requestId);
  rt.finish(ex, res);
  return res;
}

function reject(ex: Exchange, rt: Runtime, err: ProxyError, extra?: Record<string, string>): Response {
  ex.status = err.status;
  const res = extra ? textResponse(err.status, err.message, ex.requestId, extra) : errorResponse(err, ex.requestId);
  rt.finish(ex, res);
  return res;
}
