// The only code that sends a request upstream: body handling (cap, retry buffer), attempts
// with retries and backoff (SPEC §3.7), breaker accounting, timeouts, and the streaming
// response back to the client (SPEC §3.6).
import { clientGone, ProxyError, errorResponse } from "../errors.ts";
import type { CompiledRoute, RetrySettings } from "../config/compile.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { upstreamRequestHeaders, stripResponseHopHeaders, decorateResponseHeaders, attemptText, stampTemplate } from "../pipeline/headers.ts";
import { selectUpstream, issueSticky } from "./select.ts";
import type { UpstreamTarget } from "./target.ts";
import { bytesStream, type UpstreamResponse } from "./transport.ts";
import { hooks } from "../pipeline/hooks.ts";
import { StreamIdle } from "../proxy/stream-idle.ts";
import { RetryBody } from "./retry-body.ts";
import { AttemptSignal, CLIENT_WATCH_MS } from "./attempt-signal.ts";
import { log } from "../observability/log.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
const CONNECT_TIMEOUT_MS = 5000;

export type Outcome = "ok" | "http_5xx" | "connect_error" | "timeout" | "aborted";

/** The path sent upstream: the (maybe stripped) request path joined to the base path, + query. */
export function upstreamPath(ex: Exchange, route: CompiledRoute, t: UpstreamTarget): string {
  let p = ex.path;
  if (route.stripPrefix) {
    p = p.slice(route.pathPrefix.endsWith("/") ? route.pathPrefix.length - 1 : route.pathPrefix.length);
    if (p.charCodeAt(0) !== 47) p = "/" + p;
  }
  return t.basePath + p + ex.query;
}

function backoffMs(r: RetrySettings, retry: number): number {
  const cap = Math.min(r.backoffBaseMs * 2 ** (retry - 1), r.backoffMaxMs);
  return Math.random() * cap;
}

/**
 * Counts request body bytes; errors the stream with a 413 once `cap` is passed.
 * The end of a chunked body is held for one event-loop turn: Bun ends the body at the
 * last-chunk line and parses request trailers as a new (bad) request, answering 400 and
 * closing — the client's signal fires one macrotask later. A body whose client is gone by
 * then errors instead of closing, so the upstream never receives a complete request that
 * the client was answered 400 for (test/hostile/corpus.test.ts, "request trailers").
 * `touch` runs per chunk: Bun 1.4.5 does not re-arm a connection's idle timer when request
 * body bytes arrive, so an upload that is still flowing is cut at `idleTimeout` unless the
 * timer is re-armed here (test/hostile/slow-clients.test.ts, "slow body").
 */
function capped(body: ReadableStream<Uint8Array>, cap: number, end: BodyEnd, client: AbortSignal, touch: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let n = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        const { done, value } = await reader.read();
        if (!done) touch();
        if (done) {
          await new Promise<void>((r) => setImmediate(r));
          if (client.aborted) return c.error(clientGone());
          end.end();
          return c.close();
        }
        n += value.byteLength;
        if (n > cap) {
          end.overCap = true;
          const e = new ProxyError("body_too_large", "request body too large", { source: "downstream" });
          reader.cancel(e).catch(() => {});
          return c.error(e);
        }
        c.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The end of a streamed request body. The per-try and route timeouts bound the time to
 * response headers counted from the end of the request body, as Envoy's do: a client that
 * uploads slowly is not an upstream timing out (and must not open its breaker). Made only for
 * a streamed body, so that forward() makes no closure for the common request.
 */
class BodyEnd {
  ended = false;
  /** The route deadline, set when the body ends. */
  deadline = Infinity;
  /** The body passed the cap (capped() errors the stream too). */
  overCap = false;
  /** The current attempt's timer was bounded by the route deadline. */
  routeBound = false;
  /** The attempt sent before the end, whose timer starts at the end. */
  private waiting: AttemptSignal | null = null;

  constructor(private readonly route: CompiledRoute) {}

  end(): void {
    this.ended = true;
    const route = this.route;
    if (route.timeoutMs > 0) this.deadline = performance.now() + route.timeoutMs;
    const sig = this.waiting;
    this.waiting = null;
    if (sig === null) return;
    const at = performance.now();
    const perTry = route.retry.perTryTimeoutMs;
    let b = perTry > 0 ? perTry : Infinity;
    const left = this.deadline - at;
    if (this.deadline !== Infinity && left <= b) {
      b = Math.max(0, left);
      this.routeBound = true;
    }
    if (b !== Infinity) sig.armAt(at + b);
  }

  wait(sig: AttemptSignal): void {
    this.waiting = sig;
  }

  stopWaiting(): void {
    this.waiting = null;
  }
}

/** A buffered body (or none) can always be sent again; a streamed one while it fits its buffer. */
function replayable(body: RetryBody | Uint8Array | null): boolean {
  return !(body instanceof RetryBody) || body.replayable;
}

/**
 * Forward the exchange to the route's upstreams. Always resolves to the client's Response;
 * `rt.finish(ex)` is called exactly once, when the response body has been fully sent (or
 * the exchange failed). A bug in here answers 500 (internalError) instead of rejecting.
 */
export async function forward(ex: Exchange, route: CompiledRoute, rt: Runtime): Promise<Response> {
  try {
    const req = ex.req;
    const retry = route.retry;
    const cap = ex.gen.compiled.bodyBytesCap;

    // --- request body ------------------------------------------------------------------
    // Uint8Array: buffered (fits retryBufferBytes); RetryBody: streamed, re-sendable while what
    // was read of it fits retryBufferBytes (or nothing was read: a connect error).
    let body: RetryBody | Uint8Array | null = null;
    let streamed: BodyEnd | null = null;
    const baseHeaders = upstreamRequestHeaders(ex, route, route.config.auth !== undefined);
    const clRaw = ex.reqContentLength;
    const chunked = ex.reqChunked;
    if (clRaw !== null && !chunked) {
      const cl = Number(clRaw);
      // Bun rejects every malformed Content-Length but joins two equal ones into "5, 5" (RFC 9110 §8.6: reject)
      if (Number.isNaN(cl)) return await rejectFraming(ex, rt, new ProxyError("bad_request", "invalid Content-Length", { source: "downstream" }));
      if (cl > cap) return fail(ex, rt, new ProxyError("body_too_large", "request body too large", { source: "downstream" }));
      if (cl > 0) {
        if (req.body === null) return await rejectFraming(ex, rt, noBody(ex.method));
        if (cl <= retry.retryBufferBytes) {
          try {
            body = await readBody(req.body, cl, rearmIdle(ex));
          } catch {
            return fail(ex, rt, clientGone());
          }
        } else {
          streamed = new BodyEnd(route);
          body = new RetryBody(capped(req.body, cl, streamed, req.signal, rearmIdle(ex)), retry.retryBufferBytes);
        }
      }
    } else if (chunked || req.body !== null) {
      // HTTP/2 and HTTP/3 bodies need no Content-Length or Transfer-Encoding (END_STREAM ends
      // them): Bun gives such a request a body stream, and a request without a body none.
      if (req.body === null) return await rejectFraming(ex, rt, noBody(ex.method));
      streamed = new BodyEnd(route);
      body = new RetryBody(capped(req.body, cap, streamed, req.signal, rearmIdle(ex)), retry.retryBufferBytes);
    }

    // --- attempts, with retries and backoff --------------------------------------------
    const baseLen = baseHeaders.length;
    const idempotencyKey = ex.reqIdempotencyKey;
    const idempotent = IDEMPOTENT.has(ex.method) || idempotencyKey;
    // a buffered body (or none) starts the route deadline now; a streamed one when it ends
    let deadline = Infinity;
    if (streamed === null && route.timeoutMs > 0) deadline = (body === null ? ex.start : performance.now()) + route.timeoutMs;

    let tried: UpstreamTarget[] | null = null;
    let lastErr: ProxyError | null = null;

    for (let attempt = 0; ; attempt++) {
      const now = performance.now();
      if (streamed !== null) deadline = streamed.deadline;
      const picked = selectUpstream(ex, route, tried, Date.now());
      if (picked instanceof ProxyError) {
        if (lastErr === null) return fail(ex, rt, picked);
        break;
      }
      const t = picked;
      ex.upstream = t;
      ex.attempts = attempt + 1;
      (tried ??= []).push(t);

      // per-try and route deadline
      let budget = retry.perTryTimeoutMs > 0 ? retry.perTryTimeoutMs : Infinity;
      let routeBound = false;
      if (deadline !== Infinity) {
        const left = deadline - now;
        if (left <= 0) {
          lastErr = new ProxyError("timeout", "upstream timed out", { source: "upstream" });
          break;
        }
        if (left <= budget) {
          budget = left;
          routeBound = true;
        }
      }

      // cancelled when the client goes (watched from CLIENT_WATCH_MS on) or at the deadline
      const sig = new AttemptSignal();
      sig.watch(req, attempt === 0 ? now + CLIENT_WATCH_MS : now);
      if (streamed !== null) streamed.routeBound = false;
      if (streamed === null || streamed.ended) {
        if (budget !== Infinity) sig.armAt(now + budget);
      } else streamed.wait(sig);

      // the first attempt sends the list itself; a retry copies its request part
      const headers = attempt === 0 ? baseHeaders : baseHeaders.slice(0, baseLen);
      headers.push("x-hecate-retry-attempt", attemptText(attempt));
      const token = hooks.attemptStart(ex, t, attempt, headers);
      const state = t.state;
      state.inflight++;
      const trial = state.breaker.onSend();
      const attemptStart = performance.now();
      let res: UpstreamResponse | null = null;
      let err: ProxyError | null = null;
      try {
        res = await rt.transportFor(t).send({
          method: ex.method,
          target: t,
          path: upstreamPath(ex, route, t),
          host: ex.hostHeader,
          headers,
          body: body instanceof RetryBody ? body.stream() : body,
          signal: sig,
          connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, budget),
        });
      } catch (e) {
        err = e instanceof ProxyError ? e : new ProxyError("upstream_reset", `upstream error: ${(e as Error).message}`, { cause: e });
        if (sig.aborted && sig.reason !== undefined) err = sig.reason;
        // a client that left may fail the attempt through its body stream before the watch saw it
        else if (err.code !== "client_gone" && req.signal.aborted) err = clientGone(err);
      }
      if (streamed !== null) {
        streamed.stopWaiting();
        if (streamed.routeBound) routeBound = true;
        deadline = streamed.deadline;
      }
      sig.disarm();
      const nowMs = Date.now();

      if (streamed !== null && streamed.overCap) {
        state.inflight--;
        state.breaker.onAbort(trial);
        res?.body?.cancel().catch(() => {});
        return fail(ex, rt, new ProxyError("body_too_large", "request body too large", { source: "downstream" }));
      }

      if (err !== null) {
        state.inflight--;
        if (err.code === "client_gone") {
          state.breaker.onAbort(trial);
          hooks.upstreamAttempt(ex, t, "aborted", performance.now() - attemptStart, 0, token);
          return fail(ex, rt, err);
        }
        state.breaker.onFailure(trial, nowMs);
        state.lastError = err.message;
        const outcome: Outcome = err.code === "timeout" ? "timeout" : "connect_error";
        hooks.upstreamAttempt(ex, t, outcome, performance.now() - attemptStart, 0, token);
        if (err.code === "timeout" && routeBound) {
          lastErr = err;
          break;
        }
        lastErr = err;
        const canRetry =
          attempt < retry.maxRetries &&
          (err.code === "connect_error"
            ? retry.retryOnConnectErr && replayable(body)
            : // a timeout, or a reset / bad answer before the headers (Hecate would answer 502)
              retry.retryOn5xx && replayable(body) && (idempotent && retry.retryIdempotent || idempotencyKey));
        if (!canRetry) break;
        hooks.retry(ex, route, err.code === "timeout" ? "timeout" : err.code === "connect_error" ? "connect_error" : "status_5xx");
        if (!(await sleepBackoff(retry, attempt + 1, deadline, req.signal))) {
          if (req.signal.aborted) return fail(ex, rt, clientGone());
          lastErr = new ProxyError("timeout", "upstream timed out", { source: "upstream" });
          break;
        }
        continue;
      }

      // a response
      const r = res!;
      const failed = r.status === 502 || r.status === 503 || r.status === 504;
      if (failed) {
        state.breaker.onFailure(trial, nowMs);
        state.lastError = `HTTP ${r.status}`;
      } else state.breaker.onSuccess(trial);
      hooks.upstreamAttempt(ex, t, failed ? "http_5xx" : "ok", performance.now() - attemptStart, r.status, token);
      const canRetry =
        failed &&
        attempt < retry.maxRetries &&
        retry.retryOn5xx &&
        replayable(body) &&
        ((idempotent && retry.retryIdempotent) || idempotencyKey);
      if (canRetry) {
        // an alternative exists? otherwise keep this answer
        const next = selectUpstream(ex, route, tried, nowMs, true);
        if (!(next instanceof ProxyError) && (await sleepBackoff(retry, attempt + 1, deadline, req.signal))) {
          state.inflight--;
          r.body?.cancel().catch(() => {});
          hooks.retry(ex, route, "status_5xx");
          continue;
        }
        if (req.signal.aborted) {
          state.inflight--;
          r.body?.cancel().catch(() => {});
          return fail(ex, rt, clientGone());
        }
      }
      // unless the listener is HTTP/1.1 only, the client may be HTTP/2 or HTTP/3: answer with the turn's others
      if (ex.proto !== "HTTP/1.1") await endOfTurn();
      return respond(ex, route, rt, r, attempt, t);
    }

    // retries exhausted or stopped by an error
    return fail(ex, rt, lastErr ?? new ProxyError("no_healthy_upstream", "no healthy upstream"));
  } catch (e) {
    return internalError(ex, rt, e);
  }
}

/**
 * Settles at the end of the current event-loop turn (setImmediate runs after the turn's I/O
 * callbacks), one promise shared by every exchange that waits in the turn: their responses are
 * then built and handed to Bun.serve in one microtask checkpoint, and Bun.serve writes the
 * responses of one HTTP/2 (or HTTP/3) connection together — one TLS record and one send() for
 * several streams — instead of one by one as each upstream answer arrives. h2load 16×8 over
 * TLS, pinned: 30.7–33.4k → 37.6–43.4k req/s. Used on every listener but a plain one without
 * h2c, which is HTTP/1.1 only (one request in flight per connection: nothing to coalesce).
 */
let turnEnd: Promise<void> | null = null;
function endOfTurn(): Promise<void> {
  return (turnEnd ??= new Promise<void>((resolve) =>
    setImmediate(() => {
      turnEnd = null;
      resolve();
    }),
  ));
}

async function sleepBackoff(r: RetrySettings, retryNo: number, deadline: number, signal: AbortSignal): Promise<boolean> {
  const ms = backoffMs(r, retryNo);
  if (performance.now() + ms >= deadline) return false;
  if (ms >= 1) await Bun.sleep(ms);
  return !signal.aborted && performance.now() < deadline;
}

/** A Content-Length body read whole (Bun frames it: exactly `cl` bytes or an error), re-arming the idle timer per chunk. */
async function readBody(src: ReadableStream<Uint8Array>, cl: number, touch: () => void): Promise<Uint8Array> {
  const out = new Uint8Array(cl);
  const reader = src.getReader();
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    touch();
    if (n + value.byteLength > cl) throw new Error("body longer than Content-Length");
    out.set(value, n);
    n += value.byteLength;
  }
  if (n !== cl) throw new Error("body shorter than Content-Length");
  return out;
}

const NOOP = () => {};

/**
 * Re-arms the client connection's idle timer. Bun's timer ticks every 4 s, so a re-arm to N s
 * fires after N−4 to N s: one tick more keeps a body whose gaps stay under idleTimeoutSec from
 * being cut (an idle one is cut after idleTimeoutSec to idleTimeoutSec + 4 s).
 */
function rearmIdle(ex: Exchange): () => void {
  const s = Math.round(ex.gen.compiled.config.proxy.server.idleTimeoutSec);
  if (s <= 0) return NOOP;
  const sec = Math.min(255, s + 4);
  return () => {
    try {
      ex.server.timeout(ex.req, sec);
    } catch {
      // a listener without per-request timers
    }
  };
}

/**
 * Bun.serve reads and discards the content of a GET, HEAD or TRACE request (req.body is null),
 * and calls the handler before it has validated that content's chunked framing. Forwarding
 * such a request without its content would change its meaning; RFC 9110 §9.3.1 allows
 * rejecting it (content in GET is a known smuggling vector), and §9.3.8 forbids it in TRACE.
 */
function noBody(method: string): ProxyError {
  return new ProxyError("bad_request", `${method} request with content is not supported`, { source: "downstream" });
}

/**
 * 400 with `Connection: close` for a request whose framing Hecate will not forward. Waits one
 * event-loop turn first: when the rest of the body is already in Bun's buffer and invalid,
 * Bun answers it 400 itself and closes; answering too would put two responses on the wire.
 */
async function rejectFraming(ex: Exchange, rt: Runtime, err: ProxyError): Promise<Response> {
  await new Promise<void>((r) => setImmediate(r));
  if (ex.req.signal.aborted) return fail(ex, rt, clientGone());
  const res = fail(ex, rt, err);
  res.headers.set("connection", "close");
  return res;
}

/**
 * A bug in forward() must not leave the exchange counted in flight forever nor drop the
 * client without an answer: log it, answer 500 (no stack to the client), finish.
 */
function internalError(ex: Exchange, rt: Runtime, e: unknown): Response {
  log("error", "request failed with an internal error", { request_id: ex.requestId, error: String(e), stack: (e as Error)?.stack });
  if (ex.finished) return new Response(null, { status: 500 });
  return fail(ex, rt, new ProxyError("internal", "internal error", { source: "internal", cause: e }));
}

function fail(ex: Exchange, rt: Runtime, err: ProxyError): Response {
  ex.status = err.code === "client_gone" ? 499 : err.status;
  const res = errorResponse(err, ex.requestId);
  rt.finish(ex, res);
  return res;
}

/**
 * Responses with a Content-Length up to this size are read whole and answered as bytes, with
 * the upstream's Content-Length; larger ones are answered as a stream (chunked to HTTP/1.1
 * clients: Bun.serve 1.4.5 drops a handler-set Content-Length on stream bodies, oven-sh/bun#10507).
 * Why the limit is this low: Bun.serve writes a response whose head and body do not fit its
 * 16 KiB cork buffer with the head uncorked — status line, each header name, ": ", value and
 * CRLF in separate send() calls (~40 per response, measured with strace) — while a stream body
 * goes out in one send(). At 64 KiB that is 4.4k vs 37k responses/s from a bare Bun.serve.
 * A buffered body also lets a truncated upstream body become a clean 502; a streamed one ends
 * the client's response early (as any streaming proxy does).
 */
export const RESPONSE_BUFFER_BYTES = 12 * 1024;

/** Build the client's response around the upstream one; finish when its body is done. */
function respond(ex: Exchange, route: CompiledRoute, rt: Runtime, r: UpstreamResponse, attempt: number, t: UpstreamTarget): Response | Promise<Response> {
  const bytes = r.bodyBytes;
  const tpl = r.template;
  let h: Headers;
  if (tpl !== undefined && bytes !== undefined && route.plainResponses) {
    // the common answer: the connection's template of this head, stamped (the Response below,
    // made before anything else runs, copies it)
    h = stampTemplate(tpl, ex, attempt);
  } else {
    h = r.headers;
    if (r.hopStripped !== true) stripResponseHopHeaders(h);
    decorateResponseHeaders(h, ex, route, attempt, r.undecorated === true);
    if (route.sticky !== null) issueSticky(ex, route.sticky, t, h);
  }
  ex.status = r.status;
  const state = t.state;
  if (bytes !== undefined) {
    state.inflight--;
    ex.bytes = bytes.byteLength;
    const res = new Response(bytes.byteLength <= RESPONSE_BUFFER_BYTES ? bytes : bytesStream(bytes), { status: r.status, statusText: r.statusText, headers: h });
    rt.finish(ex, res);
    return res;
  }
  if (r.body === null) {
    state.inflight--;
    const res = new Response(null, { status: r.status, statusText: r.statusText, headers: h });
    rt.finish(ex, res);
    return res;
  }
  const clRaw = h.get("content-length");
  if (clRaw !== null) {
    const cl = Number(clRaw);
    if (cl <= RESPONSE_BUFFER_BYTES) return respondBuffered(ex, rt, r, h, cl, state);
  }
  return new Response(streamBody(ex, rt, r.body, state), { status: r.status, statusText: r.statusText, headers: h });
}

async function respondBuffered(ex: Exchange, rt: Runtime, r: UpstreamResponse, h: Headers, cl: number, state: UpstreamTarget["state"]): Promise<Response> {
  const buf = new Uint8Array(cl);
  let n = 0;
  const reader = r.body!.getReader();
  // An upstream that stalls mid-body would hold this exchange (and its connection) forever:
  // when the client goes (Bun closes it at idleTimeout, no byte having been sent), stop reading.
  const signal = ex.req.signal;
  const onClientGone = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", onClientGone);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.byteLength > cl) throw new Error("upstream sent more than its Content-Length");
      buf.set(value, n);
      n += value.byteLength;
    }
    if (n !== cl) throw new Error(`upstream body truncated (${n} of ${cl} bytes)`);
  } catch (e) {
    signal.removeEventListener("abort", onClientGone);
    reader.cancel().catch(() => {});
    state.inflight--;
    state.lastError = `body: ${(e as Error).message}`;
    if (ex.req.signal.aborted) return fail(ex, rt, clientGone());
    return fail(ex, rt, new ProxyError("bad_response", "bad response from upstream", { cause: e }));
  }
  signal.removeEventListener("abort", onClientGone);
  state.inflight--;
  ex.bytes = cl;
  const res = new Response(buf, { status: r.status, statusText: r.statusText, headers: h });
  rt.finish(ex, res);
  return res;
}

/** Pass the upstream body through, counting bytes; finish when it ends, errors or is cancelled. */
function streamBody(ex: Exchange, rt: Runtime, src: ReadableStream<Uint8Array>, state: UpstreamTarget["state"]): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  let done = false;
  let ctrl: ReadableStreamDefaultController<Uint8Array> | null = null;
  // Bun's idle timer cuts streams that make progress: this watchdog replaces it (stream-idle.ts)
  const idle = new StreamIdle(ex, () => {
    if (done) return;
    const e = new Error("stream idle for server.idleTimeoutSec");
    state.lastError = `body: ${e.message}`;
    end();
    ctrl?.error(e);
    reader.cancel(e).catch(() => {});
  });
  const end = () => {
    if (done) return;
    done = true;
    idle.end();
    state.inflight--;
    rt.finish(ex, null);
  };
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        ctrl = c;
      },
      async pull(c) {
        try {
          const { done: d, value } = await reader.read();
          if (done) return; // ended by the idle watchdog meanwhile
          if (d) {
            c.close();
            end();
            return;
          }
          ex.bytes += value.byteLength;
          c.enqueue(value);
          idle.progress();
        } catch (e) {
          if (done) return;
          state.lastError = `body: ${(e as Error).message}`;
          c.error(e);
          end();
        }
      },
      cancel(reason) {
        end();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
