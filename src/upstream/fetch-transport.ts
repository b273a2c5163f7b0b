// UpstreamTransport over Bun's fetch: used for https:// upstreams (HTTP/2 by ALPN where the
// upstream offers it). No decompression, no redirects, our own timeouts.
import { ProxyError } from "../errors.ts";
import type { UpstreamRequest, UpstreamResponse, UpstreamTransport } from "./transport.ts";

const CONNECT_CODES = new Set(["ConnectionRefused", "ECONNREFUSED", "FailedToOpenSocket", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "DNSResolutionFailed", "ConnectionTimeout", "ETIMEDOUT"]);

export class FetchTransport implements UpstreamTransport {
  private readonly insecureTls: boolean;
  constructor(opts: { insecureTls?: boolean } = {}) {
    this.insecureTls = opts.insecureTls ?? false;
  }

  async send(r: UpstreamRequest): Promise<UpstreamResponse> {
    const t = r.target;
    const url = `${t.https ? "https" : "http"}://${t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname}:${t.port}${r.path}`;
    const h = new Headers();
    h.set("host", r.host);
    const hs = r.headers;
    for (let i = 0; i < hs.length; i += 2) h.append(hs[i]!, hs[i + 1]!);
    const init: RequestInit & { decompress: boolean; tls?: unknown; duplex?: string } = {
      method: r.method,
      headers: h,
      body: r.body as never,
      redirect: "manual",
      decompress: false,
      signal: r.signal,
      keepalive: true,
    };
    if (r.body instanceof ReadableStream) init.duplex = "half";
    if (t.https && this.insecureTls) init.tls = { rejectUnauthorized: false };
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw mapFetchError(e, r.signal);
    }
    return { status: res.status, statusText: res.statusText, headers: res.headers, body: res.body };
  }

  close(): void {}
}

export function mapFetchError(e: unknown, signal: AbortSignal): ProxyError {
  if (e instanceof ProxyError) return e;
  if (signal.aborted) {
    const reason = signal.reason;
    if (reason instanceof ProxyError) return reason;
    return new ProxyError("client_gone", "client closed the request", { source: "downstream" });
  }
  const code = (e as { code?: string }).code ?? "";
  if (CONNECT_CODES.has(code)) return new ProxyError("connect_error", `upstream connect failed: ${code}`, { retryable: true, cause: e });
  return new ProxyError("upstream_reset", `upstream error: ${code || (e as Error).message}`, { cause: e });
}
