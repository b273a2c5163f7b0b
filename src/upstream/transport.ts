// The one interface between the pipeline and the network on the upstream side. The pipeline
// never calls fetch or opens sockets itself, so a transport can be replaced without touching it.
import type { UpstreamTarget } from "./target.ts";
import { clientGone, ProxyError } from "../errors.ts";

export interface UpstreamRequest {
  method: string;
  target: UpstreamTarget;
  /** Path + query to send, base path already joined. */
  path: string;
  /** Value of the Host header to send (the client's). */
  host: string;
  /**
   * Headers to send as a flat list [name0, value0, name1, value1, …] with lower-case names:
   * hop-by-hop already removed, X-Forwarded-* added, no Host (see `host`). A flat list because
   * the HTTP/1.1 transport serialises it straight into the request head.
   */
  headers: string[];
  /** null = no body; Uint8Array = buffered (replayable); stream = streamed once. */
  body: ReadableStream<Uint8Array> | Uint8Array | null;
  /**
   * Aborts the attempt: client gone, per-try or route timeout. An AbortSignal or the cheaper
   * AttemptSignal (attempt-signal.ts) that forward() uses; its reason is a ProxyError.
   */
  signal: AbortLike;
  /** Upper bound for the TCP/TLS connect, ms. */
  connectTimeoutMs: number;
}

/** The part of AbortSignal a transport uses. */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: EventListenerObject | (() => void)): void;
  removeEventListener(type: "abort", listener: EventListenerObject | (() => void)): void;
}

/** Why an attempt's signal fired: its ProxyError reason, else the client went away. */
export function abortError(signal: AbortLike): ProxyError {
  const r = signal.reason;
  return r instanceof ProxyError ? r : clientGone();
}

/** A body already in memory as a one-chunk stream (none for an empty body). */
export function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      if (bytes.byteLength > 0) c.enqueue(bytes);
      c.close();
    },
  });
}

export interface UpstreamResponse {
  status: number;
  statusText: string;
  headers: Headers;
  /** null for responses without a body (HEAD, 204, 304); with `bodyBytes`, a stream of them made on demand. */
  body: ReadableStream<Uint8Array> | null;
  /** The transport already left out the hop-by-hop fields (headers.ts endToEndHeaders). */
  hopStripped?: boolean;
  /** `headers` has none of X-Request-Id, X-Retry-Attempt and Via: Hecate's may be appended, not set. */
  undecorated?: boolean;
  /** The complete body, when the transport already has all of it (no stream needed). */
  bodyBytes?: Uint8Array;
  /**
   * The transport's template of this head (headers.ts responseTemplate), when it keeps one: it
   * is the same object for later responses with the same head, so a caller only stamps it
   * (stampTemplate) and passes it straight to `new Response`, and never keeps or changes it
   * otherwise. Saves making a Headers per response: `headers` is then made only when read.
   */
  template?: Headers;
}

export interface UpstreamTransport {
  /**
   * Send one attempt. Rejects with a ProxyError: `connect_error` (retryable: nothing was sent),
   * `upstream_reset`, `bad_response`, `timeout` or `client_gone` (from the signal's reason).
   */
  send(req: UpstreamRequest): Promise<UpstreamResponse>;
  /** Close idle pooled connections (shutdown). */
  close(): void;
}
