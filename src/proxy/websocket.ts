// WebSocket proxying (SPEC §3.6). A GET with `Upgrade: websocket` walks the normal stages (global
// limits and policy, route, auth, route policy) and then, instead of forward(), comes here:
//
//   1. open a WebSocket to the selected upstream with Bun's client (the client's headers minus
//      hop-by-hop and Sec-WebSocket-*, X-Forwarded-*, Via, X-Request-Id; its Host is kept; its
//      subprotocols are offered). Connect errors are retried on another upstream like any request.
//      An upstream that answers without switching protocols gets its status code passed back
//      (e.g. 401, 404) with a short Hecate body — Bun's client does not expose that response.
//   2. only then upgrade the client (`server.upgrade`), answering with the subprotocol the
//      upstream chose, so the client never sees a 101 for an upstream that is not there;
//   3. relay messages both ways, text as text and binary as binary; close codes and reasons
//      are passed on (codes that may not be sent in a frame are mapped: an abnormal end becomes
//      1001 towards the upstream, 1014 "bad gateway" towards the client);
//   4. backpressure: upstream → client, a send that reports backpressure (-1) pauses reads from
//      the upstream socket until the client's `drain`; client → upstream, while the upstream
//      socket has more than HIGH_WATER bytes queued, reads from the client are paused.
//
// Each message is framed again per hop: permessage-deflate is negotiated separately with the
// client and with the upstream. Pings are answered per hop (Bun does it), not relayed.
// A session holds its own two sockets, so a reload never touches it; it counts as one request
// in flight (rt.inflight, the upstream's in-flight count) until both sides have closed, and is
// logged then with status 101 and the bytes sent to the client.
import type { ServerWebSocket, WebSocketHandler } from "bun";
import { clientGone, ProxyError, errorResponse, textResponse } from "../errors.ts";
import type { CompiledRoute } from "../config/compile.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { upstreamRequestHeaders, type RequestFields } from "../pipeline/headers.ts";
import { lowerEq } from "../ascii.ts";
import { hooks } from "../pipeline/hooks.ts";
import { selectUpstream, issueSticky } from "../upstream/select.ts";
import { upstreamPath } from "../upstream/forward.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import { log } from "../observability/log.ts";

const CONNECT_TIMEOUT_MS = 5000;
/** Client → upstream: pause reading the client above this many queued bytes… */
const HIGH_WATER = 1 << 20;
/** …and resume below this. */
const LOW_WATER = 256 << 10;
const WATCH_MS = 5;
/** How long a side may take to answer a Close frame before its socket is cut. */
const CLOSE_GRACE_MS = 5000;
const INSECURE_TLS = process.env.HECATE_UPSTREAM_INSECURE_TLS === "1";

type Msg = string | Buffer;

/** `ws.data` of a proxied client socket: one tunnel. */
export class WsSession {
  readonly ex: Exchange;
  readonly rt: Runtime;
  readonly target: UpstreamTarget;
  readonly upstream: WebSocket;
  client: ServerWebSocket<WsSession> | null = null;
  /** Upstream messages that arrived before the client socket opened. */
  pending: Msg[] | null = [];
  clientClosed = false;
  upstreamClosed = false;
  upstreamPaused = false;
  /** The upstream's close code and reason, passed on to the client. */
  closeCode = 0;
  closeReason = "";
  ended = false;
  watch: Timer | null = null;
  grace: Timer | null = null;

  constructor(ex: Exchange, rt: Runtime, target: UpstreamTarget, upstream: WebSocket) {
    this.ex = ex;
    this.rt = rt;
    this.target = target;
    this.upstream = upstream;
  }
}

/** Is this request a WebSocket opening handshake (RFC 6455 §4.1)? */
export function isWebSocketUpgrade(fields: RequestFields): boolean {
  const u = fields.upgrade;
  return typeof u === "string" && u.length === 9 && lowerEq(u, 0, "websocket");
}

/** May `code` be sent in a Close frame (RFC 6455 §7.4)? */
function sendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

const DROP = new Set(["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept"]);

type Opened = { ws: WebSocket } | { status: number } | { error: ProxyError };

/** Open the upstream socket; resolves when it is open, refused, failed or timed out. */
function openUpstream(url: string, headers: Headers, protocols: string[], timeoutMs: number, signal: AbortSignal): Promise<Opened> {
  return new Promise((resolve) => {
    const opts: Bun.WebSocketOptions = { headers, protocols };
    if (INSECURE_TLS && url.startsWith("wss:")) opts.tls = { rejectUnauthorized: false };
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, opts);
    } catch (e) {
      resolve({ error: new ProxyError("connect_error", `upstream websocket: ${(e as Error).message}`, { retryable: true, cause: e }) });
      return;
    }
    let message = "";
    let settled = false;
    const settle = (r: Opened) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      ws.onopen = ws.onerror = ws.onclose = null;
      resolve(r);
    };
    const onAbort = () => {
      ws.terminate();
      settle({ error: clientGone() });
    };
    const timer = setTimeout(() => {
      ws.terminate();
      settle({ error: new ProxyError("connect_error", "upstream websocket handshake timed out", { retryable: true }) });
    }, timeoutMs);
    signal.addEventListener("abort", onAbort);
    ws.onopen = () => settle({ ws });
    ws.onerror = (e) => {
      message = (e as ErrorEvent).message ?? "";
    };
    ws.onclose = () => {
      // Bun's client reports a non-101 answer only in this message (its status is passed on;
      // should the wording change, the answer counts as a connect error: 502)
      const m = /Expected 101 status code: (\d{3})/.exec(message);
      if (m) settle({ status: Number(m[1]) });
      else settle({ error: new ProxyError("connect_error", `upstream websocket: ${message || "connection failed"}`, { retryable: true }) });
    };
  });
}

/**
 * Proxy a WebSocket handshake after the route stages. Resolves to a Response when the client
 * is not upgraded (errors), or to undefined once it has been (Bun then sends the 101).
 */
export async function proxyWebSocket(ex: Exchange, route: CompiledRoute, rt: Runtime): Promise<Response> {
  const req = ex.req;
  ex.proto = "HTTP/1.1"; // server.upgrade() exists only for HTTP/1.1
  const base = upstreamRequestHeaders(ex, route, route.config.auth !== undefined);
  const offered = req.headers.get("sec-websocket-protocol");
  const protocols = offered === null ? [] : offered.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const retry = route.retry;
  const budget = Math.min(CONNECT_TIMEOUT_MS, retry.perTryTimeoutMs > 0 ? retry.perTryTimeoutMs : Infinity);

  let tried: UpstreamTarget[] | null = null;
  let lastErr: ProxyError | null = null;
  for (let attempt = 0; ; attempt++) {
    const picked = selectUpstream(ex, route, tried, Date.now());
    if (picked instanceof ProxyError) return fail(ex, rt, lastErr ?? picked);
    const t = picked;
    ex.upstream = t;
    ex.attempts = attempt + 1;
    (tried ??= []).push(t);

    const list: string[] = [];
    for (let i = 0; i < base.length; i += 2) if (!DROP.has(base[i]!)) list.push(base[i]!, base[i + 1]!);
    list.push("x-hecate-retry-attempt", String(attempt));
    const token = hooks.attemptStart(ex, t, attempt, list);
    const headers = new Headers();
    headers.set("host", ex.hostHeader);
    for (let i = 0; i < list.length; i += 2) headers.append(list[i]!, list[i + 1]!);
    const host = t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname;
    const url = `${t.https ? "wss" : "ws"}://${host}:${t.port}${upstreamPath(ex, route, t)}`;

    const state = t.state;
    state.inflight++;
    const trial = state.breaker.onSend();
    const started = performance.now();
    const r = await openUpstream(url, headers, protocols, budget, req.signal);

    if ("ws" in r) {
      state.breaker.onSuccess(trial);
      hooks.upstreamAttempt(ex, t, "ok", performance.now() - started, 101, token);
      return upgradeClient(ex, route, rt, t, r.ws);
    }
    state.inflight--;
    if ("status" in r && r.status >= 200) {
      // The upstream answered without switching protocols: an application answer.
      const failed = r.status === 502 || r.status === 503 || r.status === 504;
      if (failed) {
        state.breaker.onFailure(trial, Date.now());
        state.lastError = `HTTP ${r.status}`;
      } else state.breaker.onSuccess(trial);
      hooks.upstreamAttempt(ex, t, failed ? "http_5xx" : "ok", performance.now() - started, r.status, token);
      ex.status = r.status;
      const res = textResponse(r.status, `upstream refused the websocket upgrade (HTTP ${r.status})`, ex.requestId);
      rt.finish(ex, res);
      return res;
    }
    const err = "error" in r ? r.error : new ProxyError("bad_response", `upstream answered the websocket upgrade with HTTP ${r.status}`);
    if (err.code === "client_gone") {
      state.breaker.onAbort(trial);
      hooks.upstreamAttempt(ex, t, "aborted", performance.now() - started, 0, token);
      return fail(ex, rt, err);
    }
    state.breaker.onFailure(trial, Date.now());
    state.lastError = err.message;
    hooks.upstreamAttempt(ex, t, "connect_error", performance.now() - started, 0, token);
    lastErr = err;
    if (err.code !== "connect_error" || attempt >= retry.maxRetries || !retry.retryOnConnectErr) return fail(ex, rt, err);
    hooks.retry(ex, route, "connect_error");
    const pause = Math.random() * Math.min(retry.backoffBaseMs * 2 ** attempt, retry.backoffMaxMs);
    if (pause >= 1) await Bun.sleep(pause);
    if (req.signal.aborted) return fail(ex, rt, clientGone());
  }
}

function upgradeClient(ex: Exchange, route: CompiledRoute, rt: Runtime, t: UpstreamTarget, upstream: WebSocket): Response {
  const s = new WsSession(ex, rt, t, upstream);
  upstream.binaryType = "nodebuffer";
  upstream.onmessage = (e) => {
    if (s.pending !== null) s.pending.push(e.data as Msg);
    else toClient(s, e.data as Msg);
  };
  upstream.onclose = (e) => upstreamClosed(s, e.code, e.reason);
  const h = new Headers();
  h.set("x-request-id", ex.requestId);
  if (upstream.protocol !== "") h.set("sec-websocket-protocol", upstream.protocol);
  if (route.sticky !== null) issueSticky(ex, route.sticky, t, h);
  const ok = (ex.server as unknown as { upgrade(req: Request, o: { data: WsSession; headers: Headers }): boolean }).upgrade(ex.req, { data: s, headers: h });
  if (!ok) {
    upstream.onclose = upstream.onmessage = null;
    upstream.close(1011, "client upgrade failed");
    t.state.inflight--;
    return fail(ex, rt, new ProxyError("bad_request", "websocket upgrade failed", { source: "downstream" }));
  }
  ex.status = 101;
  hooks.websocket(ex, "open");
  return undefined as unknown as Response; // upgraded: Bun answers 101 itself
}

function fail(ex: Exchange, rt: Runtime, err: ProxyError): Response {
  ex.status = err.code === "client_gone" ? 499 : err.status;
  const res = errorResponse(err, ex.requestId);
  rt.finish(ex, res);
  return res;
}

/** Upstream → client, pausing the upstream while the client is backpressured. */
function toClient(s: WsSession, data: Msg): void {
  const c = s.client!;
  if (s.clientClosed) return;
  const n = c.send(data);
  s.ex.bytes += typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
  if (n === -1) {
    if (!s.upstreamPaused) {
      s.upstreamPaused = true;
      s.upstream.pause();
    }
  } else if (n === 0 && (typeof data === "string" ? data.length : data.byteLength) > 0 && c.readyState === 1) {
    // dropped: the client has more than backpressureLimit queued (one huge message)
    log("warn", "websocket: client backpressure limit reached, closing", { request_id: s.ex.requestId });
    c.close(1011, "backpressure limit");
  }
}

/** Client → upstream, pausing the client while the upstream socket has a backlog. */
function toUpstream(s: WsSession, ws: ServerWebSocket<WsSession>, data: Msg): void {
  const u = s.upstream;
  if (s.upstreamClosed || u.readyState !== 1) return; // closing: the message has nowhere to go
  u.send(data);
  if (u.bufferedAmount > HIGH_WATER && s.watch === null) {
    ws.pause();
    s.watch = setInterval(() => {
      if (s.upstreamClosed || u.bufferedAmount < LOW_WATER) {
        clearInterval(s.watch!);
        s.watch = null;
        if (!s.clientClosed) ws.resume();
      }
    }, WATCH_MS);
  }
}

function upstreamClosed(s: WsSession, code: number, reason: string): void {
  if (s.upstreamClosed) return;
  s.upstreamClosed = true;
  s.closeCode = code;
  s.closeReason = reason;
  if (s.client !== null) closeClient(s);
}

/** Pass the upstream's close on to the client (which then ends the session). */
function closeClient(s: WsSession): void {
  const c = s.client!;
  if (s.clientClosed) return maybeEnd(s);
  const code = s.closeCode;
  if (sendable(code)) c.close(code, s.closeReason);
  else if (code === 1005) c.close(1000);
  else c.close(1014, "upstream connection lost");
  s.grace = setTimeout(() => {
    if (!s.clientClosed) c.terminate();
  }, CLOSE_GRACE_MS);
}

function maybeEnd(s: WsSession): void {
  if (s.ended || !s.upstreamClosed || !s.clientClosed) return;
  s.ended = true;
  if (s.watch !== null) clearInterval(s.watch);
  if (s.grace !== null) clearTimeout(s.grace);
  s.target.state.inflight--;
  hooks.websocket(s.ex, "close");
  s.rt.finish(s.ex, null);
}

/** The `websocket` handler object of the public Bun.serve. */
export const websocketHandler = {
  open(ws: ServerWebSocket<WsSession>) {
    const s = ws.data;
    s.client = ws;
    const queued = s.pending!;
    s.pending = null;
    for (const m of queued) toClient(s, m);
    if (s.upstreamClosed) closeClient(s); // the upstream closed before the client socket opened
  },
  message(ws: ServerWebSocket<WsSession>, data: Msg) {
    toUpstream(ws.data, ws, data);
  },
  drain(ws: ServerWebSocket<WsSession>) {
    const s = ws.data;
    if (s.upstreamPaused) {
      s.upstreamPaused = false;
      s.upstream.resume();
    }
  },
  close(ws: ServerWebSocket<WsSession>, code: number, reason: string) {
    const s = ws.data;
    s.clientClosed = true;
    if (!s.upstreamClosed) {
      const u = s.upstream;
      if (sendable(code)) u.close(code, reason);
      else if (code === 1005) u.close(1000);
      else u.close(1001, "client went away");
      s.grace = setTimeout(() => {
        if (!s.upstreamClosed) u.terminate();
      }, CLOSE_GRACE_MS);
    }
    maybeEnd(s);
  },
} satisfies WebSocketHandler<WsSession>;
