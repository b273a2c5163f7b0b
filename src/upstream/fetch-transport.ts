// UpstreamTransport over Bun's fetch: used for https:// upstreams (HTTP/2 by ALPN where the
// upstream offers it). No decompression, no redirects, our own timeouts.
//
// HTTP/2: see alpn.ts. Once an origin is known to offer h2, requests go with `protocol:
// "http2"`; Bun then multiplexes them over one connection per origin (checked: 20 concurrent
// requests, one TLS connection). HTTP/1.1 requests use fetch's keep-alive pool.
import { ProxyError } from "../errors.ts";
import { abortError, type AbortLike, type UpstreamRequest, type UpstreamResponse, type UpstreamTransport } from "./transport.ts";
import { toAbortSignal } from "./attempt-signal.ts";
import { AlpnCache, ALPN_H2 } from "./alpn.ts";

/** With this flag fetch negotiates h2 by ALPN itself: no probing needed. */
const NATIVE_H2 = process.env.BUN_FEATURE_FLAG_EXPERIMENTAL_HTTP2_CLIENT === "1";

const CONNECT_CODES = new Set(["ConnectionRefused", "ECONNREFUSED", "FailedToOpenSocket", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "DNSResolutionFailed", "ConnectionTimeout", "ETIMEDOUT"]);

export class FetchTransport implements UpstreamTransport {
  private readonly insecureTls: boolean;
  /** h2 support per https origin (null: never use HTTP/2). */
  readonly alpn: AlpnCache | null;
  constructor(opts: { insecureTls?: boolean; http2?: boolean } = {}) {
    this.insecureTls = opts.insecureTls ?? false;
    this.alpn = (opts.http2 ?? true) && !NATIVE_H2 ? new AlpnCache() : null;
  }

  async send(r: UpstreamRequest): Promise<UpstreamResponse> {
    const t = r.target;
    const url = `${t.https ? "https" : "http"}://${t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname}:${t.port}${r.path}`;
    const h = new Headers();
    h.set("host", r.host);
    const hs = r.headers;
    for (let i = 0; i < hs.length; i += 2) h.append(hs[i]!, hs[i + 1]!);
    const init: RequestInit & { decompress: boolean; tls?: unknown; duplex?: string; protocol?: "http2" } = {
      method: r.method,
      headers: h,
      body: r.body as never,
      redirect: "manual",
      decompress: false,
      signal: toAbortSignal(r.signal),
      keepalive: true,
    };
    if (r.body instanceof ReadableStream) init.duplex = "half";
    if (t.https) {
      if (this.insecureTls) init.tls = { rejectUnauthorized: false };
      if (this.alpn !== null && this.alpn.get(t) === ALPN_H2) init.protocol = "http2";
    }
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (e) {
      if (init.protocol === undefined || (e as { code?: string }).code !== "HTTP2Unsupported") throw mapFetchError(e, r.signal);
      // The origin no longer offers h2. Nothing was sent (ALPN is part of the handshake).
      this.alpn!.downgrade(t);
      if (r.body instanceof ReadableStream) throw new ProxyError("connect_error", "upstream stopped offering HTTP/2", { retryable: true, cause: e });
      delete init.protocol;
      try {
        res = await fetch(url, init);
      } catch (e2) {
        throw mapFetchError(e2, r.signal);
      }
    }
    return { status: res.status, statusText: res.statusText, headers: res.headers, body: res.body };
  }

  close(): void {
    this.alpn?.clear();
  }
}

export function mapFetchError(e: unknown, signal: AbortLike): ProxyError {
  if (e instanceof ProxyError) return e;
  if (signal.aborted) return abortError(signal);
  const code = (e as { code?: string }).code ?? "";
  if (CONNECT_CODES.has(code)) return new ProxyError("connect_error", `upstream connect failed: ${code}`, { retryable: true, cause: e });
  return new ProxyError("upstream_reset", `upstream error: ${code || (e as Error).message}`, { cause: e });
}
