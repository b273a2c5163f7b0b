// UpstreamTransport speaking cleartext HTTP/2 (h2c, prior knowledge) to http:// upstreams, for
// `proxy.enableUpstreamH2C` (SPEC §2.2). Bun's fetch cannot: its `protocol: "http2"` requires
// https (HTTP2Unsupported on http://), so this uses Bun's node:http2 client.
//
// One session (one TCP connection) per origin, shared by all requests to it: HTTP/2 multiplexes
// them, so there is no pool to size. A session is replaced when it closes, fails or receives
// GOAWAY, and closed after IDLE_MS without streams. Request bodies are written with
// backpressure (`drain`); response bodies are pull-based: the stream is paused while more than
// HIGH_WATER bytes wait to be read by the client. Upstream trailers are read and dropped
// (Bun.serve cannot send response trailers).
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from "node:http2";
import { ProxyError } from "../errors.ts";
import { abortError, type AbortLike, type UpstreamRequest, type UpstreamResponse, type UpstreamTransport } from "./transport.ts";
import type { UpstreamTarget } from "./target.ts";

// node:http2 is loaded with the first h2c connection: a process without h2c upstreams does not
// carry it (every loaded module lengthens each young-generation GC pause; see observability/prom.ts)
let http2: typeof import("node:http2") | null = null;
const NGHTTP2_CANCEL = 0x8; // RFC 9113 §7 CANCEL

const IDLE_MS = 60_000;
const HIGH_WATER = 256 * 1024;
const CONNECT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ETIMEDOUT", "ConnectionRefused", "FailedToOpenSocket"]);

interface Session {
  s: ClientHttp2Session;
  connected: boolean;
}

export class H2cTransport implements UpstreamTransport {
  private readonly sessions = new Map<string, Session>();

  /** Sessions currently open (tests, admin). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private session(t: UpstreamTarget, connectTimeoutMs: number): Session {
    const cur = this.sessions.get(t.origin);
    if (cur !== undefined && !cur.s.closed && !cur.s.destroyed) return cur;
    const host = t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname;
    const s = (http2 ??= require("node:http2") as typeof import("node:http2")).connect(`http://${host}:${t.port}`);
    const entry: Session = { s, connected: false };
    this.sessions.set(t.origin, entry);
    const forget = () => {
      if (this.sessions.get(t.origin) === entry) this.sessions.delete(t.origin);
    };
    const timer = Number.isFinite(connectTimeoutMs)
      ? setTimeout(() => {
          if (!entry.connected) s.destroy(new ProxyError("connect_error", "upstream connect timed out", { retryable: true }));
        }, connectTimeoutMs)
      : null;
    s.once("connect", () => {
      entry.connected = true;
      if (timer !== null) clearTimeout(timer);
    });
    s.on("error", () => forget()); // the streams get the error too
    s.once("goaway", () => forget());
    s.once("close", () => {
      if (timer !== null) clearTimeout(timer);
      forget();
    });
    s.setTimeout(IDLE_MS, () => s.close());
    return entry;
  }

  send(r: UpstreamRequest): Promise<UpstreamResponse> {
    const signal = r.signal;
    if (signal.aborted) return Promise.reject(abortError(signal));
    const t = r.target;
    const entry = this.session(t, r.connectTimeoutMs);
    const headers: Record<string, string | string[]> = { ":method": r.method, ":path": r.path, ":scheme": "http", ":authority": r.host };
    const hs = r.headers;
    for (let i = 0; i < hs.length; i += 2) {
      const n = hs[i]!;
      const prev = headers[n];
      if (prev === undefined) headers[n] = hs[i + 1]!;
      else if (Array.isArray(prev)) prev.push(hs[i + 1]!);
      else headers[n] = [prev, hs[i + 1]!];
    }
    const body = r.body;
    const endStream = body === null || (body instanceof Uint8Array && body.byteLength === 0);

    return new Promise<UpstreamResponse>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = entry.s.request(headers, { endStream });
      } catch (e) {
        reject(new ProxyError("connect_error", `upstream h2c: ${(e as Error).message}`, { retryable: true, cause: e }));
        return;
      }
      let settled = false;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        reject(this.mapError(e, entry, signal));
      };
      const onAbort = () => {
        stream.close(NGHTTP2_CANCEL);
        fail(abortError(signal));
      };
      signal.addEventListener("abort", onAbort);
      stream.once("error", fail);
      stream.once("close", () => fail(new ProxyError("upstream_reset", `upstream h2c stream closed before the response (code ${stream.rstCode})`)));
      stream.once("response", (h: IncomingHttpHeaders) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        const status = Number(h[":status"]);
        const out = new Headers();
        for (const [k, v] of Object.entries(h)) {
          if (k.charCodeAt(0) === 58 || v === undefined) continue; // pseudo-headers
          if (Array.isArray(v)) for (const x of v) out.append(k, x);
          else out.append(k, String(v));
        }
        const noBody = r.method === "HEAD" || status === 204 || status === 304;
        if (noBody) stream.resume();
        resolve({ status, statusText: "", headers: out, body: noBody ? null : bodyStream(stream, signal) });
      });
      if (body instanceof Uint8Array) {
        if (!endStream) stream.end(body);
      } else if (body !== null) void pump(body, stream).catch((e) => {
        stream.close(NGHTTP2_CANCEL);
        fail(e);
      });
    });
  }

  private mapError(e: unknown, entry: Session, signal: AbortLike): ProxyError {
    if (signal.aborted) return abortError(signal);
    if (e instanceof ProxyError) return e;
    const code = (e as { code?: string }).code ?? "";
    if (!entry.connected || CONNECT_CODES.has(code))
      return new ProxyError("connect_error", `upstream connect failed: ${code || (e as Error).message}`, { retryable: true, cause: e });
    return new ProxyError("upstream_reset", `upstream h2c error: ${code || (e as Error).message}`, { cause: e });
  }

  close(): void {
    for (const { s } of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}

/** Copy a request body into the stream, waiting for `drain` when its buffer is full. */
async function pump(body: ReadableStream<Uint8Array>, stream: ClientHttp2Stream): Promise<void> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (stream.destroyed) throw new Error("upstream stream closed");
      if (!stream.write(value)) await new Promise<void>((res, rej) => {
        const ok = () => {
          stream.off("close", gone);
          res();
        };
        const gone = () => {
          stream.off("drain", ok);
          rej(new Error("upstream stream closed"));
        };
        stream.once("drain", ok);
        stream.once("close", gone);
      });
    }
    stream.end();
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  }
}

/** The response body as a pull-based stream; the h2 stream is paused above HIGH_WATER. */
function bodyStream(stream: ClientHttp2Stream, signal: AbortLike): ReadableStream<Uint8Array> {
  let finished = false;
  const onAbort = () => stream.close(NGHTTP2_CANCEL);
  signal.addEventListener("abort", onAbort);
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        const finish = (err?: unknown) => {
          if (finished) return;
          finished = true;
          signal.removeEventListener("abort", onAbort);
          if (err === undefined) c.close();
          else c.error(err);
        };
        stream.on("data", (chunk: Buffer) => {
          if (finished) return;
          // the Buffer itself: reading its `.buffer` to make a plain Uint8Array view would give
          // the chunk an ArrayBuffer object that every young collection then walks (see piece()
          // in h1/transport.ts)
          c.enqueue(chunk);
          if ((c.desiredSize ?? 0) <= 0) stream.pause();
        });
        stream.once("end", () => finish());
        stream.once("error", (e) => finish(e));
        stream.once("close", () => {
          // a reset, or a close with nothing left to read and no end: the body is truncated
          if (stream.rstCode || (!stream.readableEnded && stream.readableLength === 0)) finish(new Error(`upstream h2c stream closed before its end (code ${stream.rstCode})`));
        });
      },
      pull() {
        if (stream.isPaused()) stream.resume();
      },
      cancel() {
        finished = true;
        signal.removeEventListener("abort", onAbort);
        stream.close(NGHTTP2_CANCEL);
      },
    },
    { highWaterMark: HIGH_WATER, size: (ch) => ch?.byteLength ?? 0 },
  );
}
