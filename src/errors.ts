// One error type for everything that can go wrong while proxying, and the one place that
// maps it to a response (Pingora `fail_to_proxy`, undici `UND_ERR_*`).

export type ErrorSource = "downstream" | "upstream" | "internal";

export type ProxyErrorCode =
  | "bad_request" // malformed client request → 400
  | "method_not_allowed" // CONNECT → 405
  | "header_too_large" // → 431
  | "body_too_large" // → 413
  | "no_route" // → 404
  | "no_healthy_upstream" // → 503
  | "sticky_unavailable" // → 503
  | "draining" // → 503
  | "connect_error" // refused / unreachable / connect timeout → 502 (nothing was sent)
  | "upstream_reset" // reset or closed after the request was (partly) sent → 502
  | "bad_response" // unparsable upstream response → 502
  | "timeout" // per-try or route timeout → 504
  | "client_gone" // the client went away → aborted, nothing to answer
  | "internal"; // a bug → 500

const STATUS: Record<ProxyErrorCode, number> = {
  bad_request: 400,
  method_not_allowed: 405,
  header_too_large: 431,
  body_too_large: 413,
  no_route: 404,
  no_healthy_upstream: 503,
  sticky_unavailable: 503,
  draining: 503,
  connect_error: 502,
  upstream_reset: 502,
  bad_response: 502,
  timeout: 504,
  client_gone: 499,
  internal: 500,
};

export class ProxyError extends Error {
  readonly code: ProxyErrorCode;
  readonly status: number;
  readonly source: ErrorSource;
  /** True when nothing of the request reached the upstream, so any method may be retried. */
  readonly retryable: boolean;
  constructor(code: ProxyErrorCode, message: string, opts: { source?: ErrorSource; retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = STATUS[code];
    this.source = opts.source ?? "upstream";
    this.retryable = opts.retryable ?? false;
  }
}

/** The client went away before its answer (logged as 499; never retried). */
export function clientGone(cause?: unknown): ProxyError {
  return new ProxyError("client_gone", "client closed the request", { source: "downstream", cause });
}

const TEXT = "text/plain; charset=utf-8";

/** A Hecate-generated answer: short text/plain body ending in a newline, with X-Request-Id. */
export function textResponse(status: number, message: string, requestId: string, extra?: Record<string, string>): Response {
  const body = message + "\n";
  const headers: Record<string, string> = { "content-type": TEXT, "content-length": String(Buffer.byteLength(body)), "x-request-id": requestId, ...extra };
  return new Response(body, { status, headers });
}

export function errorResponse(err: ProxyError, requestId: string): Response {
  const extra: Record<string, string> | undefined = err.code === "draining" ? { connection: "close" } : undefined;
  return textResponse(err.status, err.message, requestId, extra);
}
