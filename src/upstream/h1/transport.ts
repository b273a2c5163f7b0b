// UpstreamTransport for http:// upstreams: a pooled HTTP/1.1 client on Bun.connect.
//
// Why not fetch: fetch costs ~40 µs of CPU per request and pools at most 64 connections per
// host (BUN-NOTES.md). Client-side cost measured by bench/h1-transport.ts: 12–15 µs CPU per
// 1 KiB request here against 28–29 µs for FetchTransport (and 18–20 µs for the GET-only `tcp`
// variant of the shared bench, which reached ~1.0× nginx).
//
// One Conn per socket, one Exchange per request attempt. The request head is one string
// written through a shared scratch buffer together with a small buffered body (one send()).
// The response is parsed incrementally (parser.ts); send() resolves when the head is parsed,
// with a pull-based body stream: the socket is paused while the stream holds more than
// `bodyHighWaterMark` bytes (default 0: paused whenever nobody is waiting for a piece), so a
// slow client slows the upstream instead of filling memory. A pull on a paused socket first
// reads what the kernel already holds itself, a bounded amount (readSize), instead of resuming
// the socket: Bun reads everything the kernel holds (up to 512 KiB) at once, and a slow client
// would then keep all of it alive (bench/RESULTS.md, fifth session).
// A head byte-for-byte equal to the connection's previous one is not parsed again (parser.ts
// memo), and is answered from the connection's template of Hecate's response headers
// (H1Response, headers.ts responseTemplate): most responses build no Headers of their own.
// A connection goes back to the pool only when the response was read to its end, was
// well-formed, nothing followed it, the request was fully written and neither side asked to
// close; anything else closes it.
import type { Socket, SocketHandler } from "bun";
import { ProxyError } from "../../errors.ts";
import { abortError, bytesStream, type UpstreamRequest, type UpstreamResponse, type UpstreamTransport } from "../transport.ts";
import { ConnPool, type OriginPool, type PoolOptions } from "./pool.ts";
import { FRAMING_NONE, ResponseParser, STEP_BODY, STEP_DONE, STEP_ERROR, STEP_HEAD, STEP_MORE } from "./parser.ts";
import { H1Tunnel } from "./tunnel.ts";
import { RECV_ERROR, recvNow } from "../../runtime/socket-options.ts";
import { endToEndHeaders, endToEndScan, responseTemplate } from "../../pipeline/headers.ts";

export { H1Tunnel, type TunnelHandlers } from "./tunnel.ts";

export interface H1TransportOptions extends PoolOptions {
  /** Largest response head (and trailer section) accepted, bytes. Default 65536. */
  maxHeaderBytes?: number;
  /**
   * Response bytes buffered in the body stream before the socket is paused. Default 0: what
   * one socket read brought beyond the piece being asked for waits, and the socket stays
   * paused until the next pull (which reads the kernel's queue itself, a bounded amount: see
   * readSize). With 64 KiB, 1,000 slow readers held ~134 KB of buffers each, with 0 ~97 KB
   * while Bun did the reads (bench/hostile.sh -X).
   */
  bodyHighWaterMark?: number;
}

/**
 * A response as the pipeline gets it. Its `headers` are made when first read, from the parsed
 * fields (the upgrade path makes them at once). An undecorated head also carries the
 * connection's `template` of it (transport.ts UpstreamResponse), the same object for as long
 * as the connection brings the same head; forward.ts answers from it when it can, so that most
 * responses never make a Headers of their own. A body that arrived whole with the head is
 * `bodyBytes`, made into a stream only for a consumer that asks for one (forward.ts does not).
 */
class H1Response implements H1UpgradeResponse {
  readonly tunnel = null;
  bodyBytes: Uint8Array | undefined = undefined;
  stream: ReadableStream<Uint8Array> | null = null;
  private made: Headers | null;
  constructor(
    readonly status: number,
    readonly statusText: string,
    headers: Headers | null,
    private readonly fields: readonly string[],
    readonly undecorated: boolean,
    readonly template: Headers | undefined,
    /** false for the answer to an upgrade request: its Connection and Upgrade fields stay. */
    readonly hopStripped = true,
  ) {
    this.made = headers;
  }
  get headers(): Headers {
    return (this.made ??= endToEndHeaders(this.fields));
  }
  get body(): ReadableStream<Uint8Array> | null {
    if (this.stream === null && this.bodyBytes !== undefined) this.stream = bytesStream(this.bodyBytes);
    return this.stream;
  }
}

/** What an upgrade request gets back: a normal response, or a 101 with the raw connection. */
export interface H1UpgradeResponse extends UpstreamResponse {
  /** Set for a 101 Switching Protocols: the connection, detached from the pool. */
  tunnel: H1Tunnel | null;
}

const C_CONNECTING = 0;
const C_IDLE = 1;
const C_BUSY = 2;
const C_UPGRADED = 3;
const C_CLOSED = 4;

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
/** Methods that carry a body by convention: an empty one is announced as `content-length: 0` (as fetch does). */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);
const CL_RE = /^\d{1,15}$/;
const LAST_CHUNK = Buffer.from("0\r\n\r\n");
const CRLF = Buffer.from("\r\n");
/** Head + small body, and small chunks with their framing, are assembled here and written at once. */
const SCRATCH = Buffer.allocUnsafe(64 * 1024);
const SMALL_CHUNK = 16 * 1024;
/** A request head's bytes besides method, path, host and fields: " HTTP/1.1\r\nhost: ", CRLF, the empty line. */
const HEAD_FIXED_BYTES = 1 + 17 + 2 + 2;
/** The buffer the last writeHead() wrote to (SCRATCH, or one of its own for a large head). */
let headOut: Buffer = SCRATCH;

/** `s` into `out` at `o` as latin-1 (the low byte of each code unit, as Buffer#write "latin1"); the offset after it. */
function put(out: Buffer, o: number, s: string): number {
  const n = s.length;
  if (n > 64) return o + out.write(s, o, n, "latin1");
  for (let i = 0; i < n; i++) out[o + i] = s.charCodeAt(i);
  return o + n;
}
/** Stop reusing a connection this long before the upstream's announced keep-alive timeout. */
const KEEP_ALIVE_MARGIN_MS = 1000;
const noop = () => {};

type Origin = OriginPool<Conn, Exchange>;

/** One socket to one origin. Its `data` is itself, so the shared handlers find it. */
class Conn {
  socket: Socket<Conn> | null = null;
  state = C_CONNECTING;
  ex: Exchange | null = null;
  idleDeadline = 0;
  inIdle = false;
  /** Has been idle in the pool: a request on it may meet a keep-alive close race. */
  reused = false;
  /** Response bytes received during the current exchange. */
  received = 0;
  /** Still counted in its origin's `open`. */
  counted = true;
  /** Bytes a short write left behind, written on drain (Bun sockets do not buffer). */
  pending: Uint8Array[] | null = null;
  drainWait: (() => void) | null = null;
  paused = false;
  tunnel: H1Tunnel | null = null;
  timer: Timer | undefined = undefined;
  readonly parser: ResponseParser;
  /** The parsed fields (the parser's remembered array) `template` was made from. */
  templateOf: readonly string[] | null = null;
  /** The response headers of `templateOf` as Hecate answers them (headers.ts responseTemplate). */
  template: Headers | undefined = undefined;

  constructor(
    readonly t: H1Transport,
    readonly op: Origin,
  ) {
    this.parser = new ResponseParser({ maxHeaderBytes: t.maxHeaderBytes });
  }

  alive(): boolean {
    return this.state === C_IDLE && this.socket !== null && this.socket.readyState > 0;
  }

  /** Write, queueing what the socket did not take. `transient` buffers are copied if queued. */
  write(buf: Uint8Array, off: number, len: number, transient: boolean): number {
    const s = this.socket;
    if (s === null || this.state === C_CLOSED) return -1;
    if (this.pending !== null) {
      const rest = buf.subarray(off, off + len);
      this.pending.push(transient ? Buffer.from(rest) : rest);
      return 0;
    }
    const n = s.write(buf, off, len);
    if (n === len || n < 0) return n;
    const rest = buf.subarray(off + n, off + len);
    this.pending = [transient ? Buffer.from(rest) : rest];
    return n;
  }

  waitDrain(): Promise<void> {
    return new Promise<void>((resolve) => (this.drainWait = resolve));
  }

  onOpen(s: Socket<Conn>): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.state === C_CLOSED) {
      // connect timed out meanwhile
      s.terminate();
      return;
    }
    this.socket = s;
    s.setNoDelay(true);
    this.state = C_IDLE;
    const ex = this.ex;
    this.ex = null;
    if (ex !== null) ex.attach(this);
    else this.t.release(this); // its request went away while connecting: keep it for the next
  }

  onConnectError(err: Error): void {
    if (this.state === C_CLOSED) return;
    const ex = this.ex;
    this.ex = null;
    this.finalize();
    if (ex !== null) {
      ex.conn = null;
      const code = (err as { code?: string }).code ?? err.message;
      ex.fail(new ProxyError("connect_error", `upstream connect failed: ${code}`, { retryable: true, cause: err }));
    }
  }

  onConnectTimeout(): void {
    if (this.state !== C_CONNECTING) return;
    const ex = this.ex;
    this.ex = null;
    this.finalize();
    if (ex !== null) {
      ex.conn = null;
      ex.fail(new ProxyError("connect_error", `upstream connect timed out after ${ex.req.connectTimeoutMs} ms`, { retryable: true }));
    }
  }

  onData(chunk: Buffer): void {
    switch (this.state) {
      case C_BUSY:
        this.ex!.onData(this, chunk);
        return;
      case C_UPGRADED:
        this.tunnel!.onData(chunk);
        return;
      case C_IDLE:
        // an idle connection has nothing to say: whatever it is, the connection is unusable
        this.destroy(true);
        return;
    }
  }

  onDrain(): void {
    const p = this.pending;
    if (p !== null) {
      const s = this.socket!;
      while (p.length > 0) {
        const b = p[0]!;
        const n = s.write(b);
        if (n < 0) return;
        if (n < b.byteLength) {
          p[0] = b.subarray(n);
          return;
        }
        p.shift();
      }
      this.pending = null;
      const w = this.drainWait;
      this.drainWait = null;
      if (w !== null) w();
    }
    if (this.tunnel !== null) this.tunnel.onDrain();
  }

  onClose(err?: Error): void {
    if (this.state === C_CLOSED) return;
    const ex = this.ex;
    this.ex = null;
    this.finalize();
    if (ex !== null) {
      ex.conn = null;
      ex.connClosed(this, err !== undefined);
    }
    if (this.tunnel !== null) this.tunnel.onClose(err);
  }

  /** Close it: graceful (FIN) after a complete exchange, `hard` (RST) when aborting one. */
  destroy(hard = false): void {
    if (this.state === C_CLOSED) return;
    this.ex = null;
    this.finalize();
    const s = this.socket;
    if (s !== null) {
      if (hard) s.terminate();
      else s.end();
    }
  }

  /** Bookkeeping of a close, exactly once. */
  private finalize(): void {
    this.state = C_CLOSED;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const w = this.drainWait;
    this.drainWait = null;
    if (w !== null) w();
    this.op.remove(this);
    if (this.counted) {
      this.counted = false;
      this.op.open--;
      this.t.wake(this.op);
    }
  }
}

const MIN_READ = 16384;
const MAX_READ = 262144;

/**
 * How much a pull reads from a paused socket. A body of a known length up to 256 KiB: all of
 * it (one read for what has arrived). Any other: 16 KiB at first, then a quarter of what the
 * response has brought so far, up to 256 KiB. A slow reader stops pulling within its first
 * ~100 KB (the kernel and Bun.serve take that much), so it holds small reads; a fast download
 * reaches large reads within its first MiB (1,000 slow readers: bench/RESULTS.md).
 */
function readSize(received: number, contentLength: number): number {
  if (contentLength >= 0 && contentLength <= MAX_READ) return contentLength < MIN_READ ? MIN_READ : contentLength;
  return received < MIN_READ * 4 ? MIN_READ : received >= MAX_READ * 4 ? MAX_READ : (received >>> 2) & ~4095;
}

const HANDLERS: SocketHandler<Conn> = {
  open(s) {
    s.data.onOpen(s);
  },
  data(s, d) {
    s.data.onData(d);
  },
  drain(s) {
    s.data.onDrain();
  },
  close(s, err) {
    s.data.onClose(err);
  },
  error(s, err) {
    // a handler threw (a bug) or the socket failed: treat it as a reset
    s.data.onClose(err);
    s.terminate();
  },
  connectError(s, err) {
    s.data.onConnectError(err);
  },
};

function connectTimedOut(c: Conn): void {
  c.onConnectTimeout();
}

/**
 * Bytes `a`..`b` of a socket read, as the read itself, a copy or a view. A view (`subarray`,
 * `Buffer#slice`) makes JavaScriptCore give the read an ArrayBuffer object of its own, and the
 * end phase of every young-generation collection walks all such buffers made since the last
 * one (one atomic dereference and a free each): a view per 1 KiB response took that phase from
 * ~0.07 to ~0.4–0.6 ms of each pause, which is Hecate's p99. A piece under 16 KiB is copied
 * (what a memcpy of it costs is less than what its view costs the collector); a larger one is
 * a view unless it is less than half of its read (a chunked body: Bun reads up to 512 KiB at
 * once), where a view would keep the whole read alive while the piece waits for a slow client.
 */
const VIEW_MIN_BYTES = 16 * 1024;
function piece(chunk: Buffer, a: number, b: number): Uint8Array {
  if (a === 0 && b === chunk.length) return chunk;
  const n = b - a;
  return n >= VIEW_MIN_BYTES && n * 2 >= chunk.length ? chunk.subarray(a, b) : copyOf(chunk, a, b);
}

/** A copy of `buf[a..b]` made without a view of `buf` (see piece()). */
function copyOf(buf: Buffer, a: number, b: number): Uint8Array {
  const out = new Uint8Array(b - a);
  buf.copy(out, 0, a, b);
  return out;
}

function chunkSize(c: Uint8Array | undefined): number {
  return c!.byteLength;
}

/** One request attempt; also the body stream's underlying source and the abort listener. */
class Exchange {
  /** Aborted while waiting in the origin's queue. */
  cancelled = false;
  conn: Conn | null = null;
  /** send() has resolved or rejected. */
  settled = false;
  /** Over: response read to the end, failed, cancelled or aborted. */
  finished = false;
  reqDone = false;
  /** The request head was handed to the socket of the current connection (written or queued). */
  sentAny = false;
  staleRetried = false;
  ctrl: ReadableStreamDefaultController<Uint8Array> | null = null;
  /** The request body's reader while the pump runs (cancelled when the exchange ends early). */
  reader: { cancel(reason?: unknown): Promise<void> } | null = null;
  /** Streamed body: the Content-Length to send exactly, or -1 for chunked. */
  fixedLength = -1;
  /** The request said `Connection: close`. */
  closeAfter = false;
  resolve: (r: H1UpgradeResponse) => void = noop;
  reject: (e: unknown) => void = noop;
  /**
   * A parsed head whose body may still complete within the same socket read. While set, body
   * bytes are collected in `inline`; send() resolves with `bodyBytes` when the body ends in that
   * read (no stream at all), else with a stream fed the collected bytes first.
   */
  heldHead: H1Response | null = null;
  inline: Uint8Array[] | null = null;

  constructor(
    readonly t: H1Transport,
    readonly req: UpstreamRequest,
    readonly upgrade: boolean,
  ) {}

  // --- request -------------------------------------------------------------------------

  attach(c: Conn): void {
    this.conn = c;
    c.ex = this;
    c.state = C_BUSY;
    c.received = 0;
    const req = this.req;
    c.parser.reset(req.method === "HEAD", this.upgrade);
    this.sentAny = false;
    this.reqDone = false;
    const body = req.body;
    // A write can close the socket synchronously (EPIPE): its close event then runs inside the
    // write and may already have moved this exchange elsewhere (retry) or failed it. Until the
    // write returns, count the head as sent (the conservative answer for a retry decision).
    this.sentAny = true;
    let w: number;
    if (body === null || body instanceof Uint8Array) {
      const bl = body === null ? 0 : body.byteLength;
      const n = this.writeHead(SCRATCH.length - bl);
      const out = headOut;
      if (out === SCRATCH) {
        if (body !== null) SCRATCH.set(body, n);
        w = c.write(SCRATCH, 0, n + bl, true);
      } else {
        w = c.write(out, 0, n, false);
        if (w >= 0 && body !== null && this.conn === c) c.write(body, 0, bl, false);
      }
      if (this.conn !== c) return;
      this.sentAny = w >= 0;
      this.reqDone = true;
      return;
    }
    const n = this.writeHead(SCRATCH.length);
    w = c.write(headOut, 0, n, headOut === SCRATCH);
    if (this.conn !== c) return;
    this.sentAny = w >= 0;
    // a socket that is already closed: its close event decides (nothing of the body was read)
    if (this.sentAny) void this.pump(c, body);
  }

  /**
   * Write the request head (latin-1) byte by byte, without building it as a string (~40% of
   * the time and ~20 string cells per request): into SCRATCH when it fits in `room` bytes,
   * else into a buffer of its own. `headOut` is where it went; returns its length. Decides the
   * body's framing (`fixedLength`) and notes a `Connection: close` on the way.
   */
  private writeHead(room: number): number {
    const req = this.req;
    const h = req.headers;
    let cl: string | null = null;
    let size = req.method.length + req.path.length + req.host.length + HEAD_FIXED_BYTES;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name === "content-length") {
        cl = h[i + 1]!;
        continue;
      }
      if (name === "transfer-encoding" || name === "host") continue;
      if (name === "connection" && /(?:^|,)\s*close\s*(?:,|$)/i.test(h[i + 1]!)) this.closeAfter = true;
      size += name.length + h[i + 1]!.length + 4;
    }
    const body = req.body;
    let framing: string | null = null;
    if (body === null) {
      if (cl !== null || BODY_METHODS.has(req.method)) framing = "content-length: 0\r\n";
    } else if (body instanceof Uint8Array) {
      framing = `content-length: ${body.byteLength}\r\n`;
    } else if (cl !== null && CL_RE.test(cl)) {
      this.fixedLength = Number(cl);
      framing = `content-length: ${cl}\r\n`;
    } else {
      this.fixedLength = -1;
      framing = "transfer-encoding: chunked\r\n";
    }
    if (framing !== null) size += framing.length;
    const out = size <= room ? SCRATCH : Buffer.allocUnsafe(size);
    headOut = out;
    let o = put(out, 0, req.method);
    out[o++] = 32;
    o = put(out, o, req.path);
    o = put(out, o, " HTTP/1.1\r\nhost: ");
    o = put(out, o, req.host);
    out[o++] = 13;
    out[o++] = 10;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name === "content-length" || name === "transfer-encoding" || name === "host") continue;
      o = put(out, o, name);
      out[o++] = 58;
      out[o++] = 32;
      o = put(out, o, h[i + 1]!);
      out[o++] = 13;
      out[o++] = 10;
    }
    if (framing !== null) o = put(out, o, framing);
    out[o++] = 13;
    out[o++] = 10;
    return o;
  }

  /** Stream the request body, waiting for drain whenever the socket took less than offered. */
  private async pump(c: Conn, stream: ReadableStream<Uint8Array>): Promise<void> {
    const fixed = this.fixedLength;
    let sent = 0;
    let reader;
    try {
      reader = stream.getReader();
    } catch (e) {
      // locked or already read: a caller bug, but never an unhandled rejection
      return this.failConn(c, new ProxyError("internal", "request body stream is not readable", { source: "internal", cause: e }));
    }
    this.reader = reader;
    try {
      for (;;) {
        if (c.pending !== null) await c.waitDrain();
        if (this.conn !== c || c.state === C_CLOSED) break;
        const { done, value } = await reader.read();
        if (this.conn !== c || c.state === C_CLOSED) break;
        if (done) {
          this.reader = null;
          if (fixed >= 0) {
            if (sent !== fixed) return this.failConn(c, new ProxyError("bad_request", "request body shorter than its Content-Length", { source: "downstream" }));
          } else c.write(LAST_CHUNK, 0, LAST_CHUNK.length, false);
          this.reqDone = true;
          return;
        }
        const n = value.byteLength;
        if (n === 0) continue;
        sent += n;
        if (fixed >= 0) {
          if (sent > fixed) return this.failConn(c, new ProxyError("bad_request", "request body longer than its Content-Length", { source: "downstream" }));
          c.write(value, 0, n, false);
        } else if (n <= SMALL_CHUNK) {
          let o = SCRATCH.write(n.toString(16), 0, "latin1");
          SCRATCH[o++] = 13;
          SCRATCH[o++] = 10;
          SCRATCH.set(value, o);
          o += n;
          SCRATCH[o++] = 13;
          SCRATCH[o++] = 10;
          c.write(SCRATCH, 0, o, true);
        } else {
          const line = Buffer.from(`${n.toString(16)}\r\n`, "latin1");
          c.write(line, 0, line.length, false);
          c.write(value, 0, n, false);
          c.write(CRLF, 0, 2, false);
        }
      }
      // the connection is gone or was handed back: stop reading the client
      this.reader = null;
      reader.cancel().catch(noop);
    } catch (e) {
      // reading the client's body failed: client gone, or the body cap (a ProxyError)
      this.reader = null;
      if (this.conn === c) this.failConn(c, e instanceof ProxyError ? e : new ProxyError("client_gone", "client request body failed", { source: "downstream", cause: e }));
      else this.fail(e instanceof ProxyError ? e : new ProxyError("client_gone", "client request body failed", { source: "downstream", cause: e }));
    }
  }

  // --- response ------------------------------------------------------------------------

  onData(c: Conn, chunk: Buffer): void {
    c.received += chunk.length;
    const p = c.parser;
    let pos = 0;
    for (;;) {
      const r = p.execute(chunk, pos);
      pos = p.pos;
      switch (r) {
        case STEP_MORE:
          if (this.heldHead !== null) this.releaseHead();
          return;
        case STEP_BODY: {
          if (this.heldHead !== null) {
            const a = p.bodyStart;
            const b = p.bodyEnd;
            this.inline!.push(piece(chunk, a, b));
            continue;
          }
          const ctrl = this.ctrl;
          if (ctrl !== null) {
            const a = p.bodyStart;
            const b = p.bodyEnd;
            ctrl.enqueue(piece(chunk, a, b));
            if (!c.paused && ctrl.desiredSize! <= 0) {
              c.paused = true;
              c.socket!.pause();
            }
          }
          continue;
        }
        case STEP_HEAD:
          if (!this.onHead(c, chunk, pos)) return;
          continue;
        case STEP_DONE:
          if (this.heldHead !== null) this.releaseHeadWhole();
          this.onDone(c, pos < chunk.length);
          return;
        case STEP_ERROR:
          this.failConn(c, new ProxyError("bad_response", `bad upstream response: ${p.error}`));
          return;
      }
    }
  }

  /** A final head; false when the connection was handed off (101). */
  private onHead(c: Conn, chunk: Buffer, pos: number): boolean {
    const p = c.parser;
    const hs = p.headers;
    // an upgrade's answer keeps Connection/Upgrade (the WebSocket proxy reads them); any other
    // leaves without its hop-by-hop fields, so forward() has nothing to delete
    this.settled = true;
    if (!this.upgrade) {
      let r: H1Response;
      if (hs === c.templateOf) r = new H1Response(p.status, p.statusText, null, hs, true, c.template);
      else {
        // a head this connection did not bring last: a template for it when Hecate's fields can be added
        const headers = endToEndHeaders(hs);
        if (endToEndScan.undecorated) {
          c.templateOf = hs;
          c.template = responseTemplate(headers);
          r = new H1Response(p.status, p.statusText, null, hs, true, c.template);
        } else {
          c.templateOf = null;
          c.template = undefined;
          r = new H1Response(p.status, p.statusText, headers, hs, false, undefined);
        }
      }
      if (p.framing === FRAMING_NONE) {
        this.resolve(r);
        return true;
      }
      this.heldHead = r;
      this.inline = [];
      return true;
    }
    const headers = new Headers();
    for (let i = 0; i < hs.length; i += 2) headers.append(hs[i]!, hs[i + 1]!);
    if (p.upgraded) {
      const tunnel = new H1Tunnel(c, chunk.subarray(pos));
      c.tunnel = tunnel;
      c.state = C_UPGRADED;
      c.ex = null;
      this.conn = null;
      this.finished = true;
      this.req.signal.removeEventListener("abort", this);
      // the upgraded connection leaves the pool's accounting: a long-lived tunnel must not hold
      // a slot that HTTP requests wait for
      c.counted = false;
      c.op.open--;
      this.t.wake(c.op);
      c.paused = true;
      c.socket!.pause();
      this.resolve({ status: p.status, statusText: p.statusText, headers, body: null, tunnel });
      return false;
    }
    if (p.framing === FRAMING_NONE) {
      this.resolve({ status: p.status, statusText: p.statusText, headers, body: null, tunnel: null });
      return true;
    }
    this.heldHead = new H1Response(p.status, p.statusText, headers, hs, false, undefined, false);
    this.inline = [];
    return true;
  }

  /** The read ended before the body: resolve with a stream that starts with what arrived. */
  private releaseHead(): void {
    const r = this.heldHead!;
    const parts = this.inline!;
    this.heldHead = null;
    this.inline = null;
    r.stream = new ReadableStream<Uint8Array>(this, this.t.bodyStrategy);
    for (const part of parts) this.ctrl!.enqueue(part);
    // the rest of the body is read when it is asked for (pull), like every later piece
    const c = this.conn!;
    if (!c.paused && this.ctrl!.desiredSize! <= 0) {
      c.paused = true;
      c.socket!.pause();
    }
    this.resolve(r);
  }

  /** The whole body came with the head: resolve with the bytes, no stream. */
  private releaseHeadWhole(): void {
    const r = this.heldHead!;
    const parts = this.inline!;
    this.heldHead = null;
    this.inline = null;
    let bytes: Uint8Array;
    if (parts.length === 1) bytes = parts[0]!;
    else {
      let n = 0;
      for (const part of parts) n += part.byteLength;
      const all = new Uint8Array(n);
      n = 0;
      for (const part of parts) {
        all.set(part, n);
        n += part.byteLength;
      }
      bytes = all;
    }
    r.bodyBytes = bytes;
    this.resolve(r);
  }

  private onDone(c: Conn, trailing: boolean): void {
    this.finished = true;
    this.req.signal.removeEventListener("abort", this);
    if (this.ctrl !== null) this.ctrl.close();
    c.ex = null;
    this.conn = null;
    if (!trailing && this.reqDone && c.pending === null && c.parser.keepAlive && !this.upgrade && !this.closeAfter) this.t.release(c);
    else {
      c.destroy(false);
      if (this.reader !== null) {
        this.reader.cancel().catch(noop);
        this.reader = null;
      }
    }
  }

  /** The connection closed under us (not by us); `failed`: with an error (a reset), not a FIN. */
  connClosed(c: Conn, failed: boolean): void {
    if (this.finished) return;
    const p = c.parser;
    if (this.settled) {
      if (p.finish() === STEP_DONE && !failed) {
        // close-delimited body: a FIN is its end; a reset is not (nginx: "recv() failed")
        this.finished = true;
        this.req.signal.removeEventListener("abort", this);
        if (this.ctrl !== null) this.ctrl.close();
        return;
      }
      this.fail(new ProxyError("upstream_reset", "upstream closed the connection before the end of the body"));
      return;
    }
    if (c.received === 0 && !this.staleRetried && this.replayable()) {
      // nothing was sent, or a pooled connection died under an idempotent request (the
      // keep-alive race: the upstream closed it as we reused it): once more on a fresh one
      if (!this.sentAny || (c.reused && IDEMPOTENT.has(this.req.method))) {
        this.staleRetried = true;
        this.t.dispatch(this, true);
        return;
      }
    }
    if (!this.sentAny) this.fail(new ProxyError("connect_error", "upstream connection closed before the request was sent", { retryable: true }));
    else if (c.received === 0) this.fail(new ProxyError("upstream_reset", "upstream closed the connection without a response"));
    else this.fail(new ProxyError("upstream_reset", "upstream closed the connection in the middle of the response head"));
  }

  private replayable(): boolean {
    const b = this.req.body;
    return b === null || b instanceof Uint8Array;
  }

  /** Fail while attached to `c`: the connection cannot be reused. */
  failConn(c: Conn, err: ProxyError): void {
    if (this.conn === c) {
      this.conn = null;
      c.ex = null;
    }
    c.destroy(true);
    this.fail(err);
  }

  fail(err: ProxyError): void {
    if (this.finished) return;
    this.finished = true;
    this.req.signal.removeEventListener("abort", this);
    if (!this.settled || this.heldHead !== null) {
      // not delivered yet (a held head counts as not delivered)
      this.settled = true;
      this.heldHead = null;
      this.inline = null;
      this.reject(err);
    } else if (this.ctrl !== null) {
      this.ctrl.error(err);
    }
    if (this.reader !== null) {
      this.reader.cancel(err).catch(noop);
      this.reader = null;
    }
  }

  /** The attempt's signal fired (client gone, per-try or route timeout). */
  handleEvent(): void {
    if (this.finished) return;
    const c = this.conn;
    if (c !== null) {
      this.conn = null;
      c.ex = null;
      // a connection still opening is kept for the next request; one in use is torn down
      if (c.state !== C_CONNECTING) c.destroy(true);
    } else this.cancelled = true;
    this.fail(abortError(this.req.signal));
  }

  // --- body stream source (ReadableStream calls these with `this` = the exchange) ----

  start(ctrl: ReadableStreamDefaultController<Uint8Array>): void {
    this.ctrl = ctrl;
  }

  pull(): void {
    const c = this.conn;
    if (c !== null && c.paused && c.state === C_BUSY) {
      // What the kernel already holds is read here, at most readSize() bytes, and the socket
      // stays paused; only when it holds nothing does Bun read it again. An end of stream stays
      // pending for Bun to see; an error recv() took fails the body here. (A socket Bun closed
      // has fd -1 before its close handler runs, so a reused descriptor is never read.)
      const size = readSize(c.received, c.parser.contentLength);
      const buf = Buffer.allocUnsafeSlow(size);
      const n = recvNow((c.socket as Socket<Conn> & { readonly fd: number }).fd, buf); // fd: in Bun, not in its types
      if (n > 0) {
        let read = buf;
        if (n < size) {
          // less than half of the buffer: a copy of its own (see piece()), else a view
          if (n * 2 < size) buf.copy((read = Buffer.allocUnsafeSlow(n)), 0, 0, n);
          else read = buf.subarray(0, n);
        }
        this.onData(c, read);
        return;
      }
      if (n === RECV_ERROR) {
        this.failConn(c, new ProxyError("upstream_reset", "upstream connection failed in the middle of the body"));
        return;
      }
      c.paused = false;
      c.socket!.resume();
    }
  }

  cancel(): void {
    // the client went away mid-body: the rest of this response is unwanted, drop the connection
    if (this.finished) return;
    this.finished = true;
    this.ctrl = null;
    this.req.signal.removeEventListener("abort", this);
    const c = this.conn;
    if (c !== null) {
      this.conn = null;
      c.ex = null;
      c.destroy(true);
    }
    if (this.reader !== null) {
      this.reader.cancel().catch(noop);
      this.reader = null;
    }
  }
}

export class H1Transport implements UpstreamTransport {
  readonly maxHeaderBytes: number;
  readonly bodyStrategy: QueuingStrategy<Uint8Array>;
  private readonly pool: ConnPool<Conn, Exchange>;
  private closed = false;

  constructor(opts: H1TransportOptions = {}) {
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 64 * 1024;
    this.bodyStrategy = { highWaterMark: opts.bodyHighWaterMark ?? 0, size: chunkSize };
    this.pool = new ConnPool<Conn, Exchange>(opts);
  }

  send(req: UpstreamRequest): Promise<UpstreamResponse> {
    return this.start(req, false);
  }

  /**
   * Send a request that asks for a protocol switch (the caller puts `connection: upgrade` and
   * `upgrade: …` in `req.headers`). Always on a fresh connection. A 101 resolves with `tunnel`
   * set and `body` null; any other answer is an ordinary response (its connection is not reused).
   */
  upgrade(req: UpstreamRequest): Promise<H1UpgradeResponse> {
    return this.start(req, true);
  }

  private start(req: UpstreamRequest, upgrade: boolean): Promise<H1UpgradeResponse> {
    const signal = req.signal;
    if (signal.aborted) return Promise.reject(abortError(signal));
    const ex = new Exchange(this, req, upgrade);
    const p = new Promise<H1UpgradeResponse>((resolve, reject) => {
      ex.resolve = resolve;
      ex.reject = reject;
    });
    signal.addEventListener("abort", ex);
    this.dispatch(ex, upgrade);
    return p;
  }

  /** Give the exchange a connection: a pooled one (unless `fresh`), a new one, or a place in the queue. */
  dispatch(ex: Exchange, fresh: boolean): void {
    const t = ex.req.target;
    const op = this.pool.origin(t.origin, t.hostname, t.port);
    if (!fresh) {
      const c = op.take(Date.now());
      if (c !== null) {
        ex.attach(c);
        return;
      }
    }
    if (op.open < this.pool.maxConnsPerOrigin) this.connect(op, ex);
    else op.enqueue(ex);
  }

  private connect(op: Origin, ex: Exchange): void {
    op.open++;
    const c = new Conn(this, op);
    c.ex = ex;
    ex.conn = c;
    const ms = ex.req.connectTimeoutMs;
    if (ms > 0 && ms < 2 ** 31) c.timer = setTimeout(connectTimedOut, ms, c);
    try {
      Bun.connect<Conn>({ hostname: op.hostname, port: op.port, data: c, socket: HANDLERS }).catch(noop);
    } catch (e) {
      c.onConnectError(e as Error);
    }
  }

  /** A connection finished an exchange cleanly: hand it to a waiter, or keep it idle. */
  release(c: Conn): void {
    c.state = C_IDLE;
    c.reused = true;
    if (c.paused) {
      c.paused = false;
      c.socket!.resume();
    }
    const w = c.op.dequeue();
    if (w !== null) {
      w.attach(c);
      return;
    }
    if (this.closed) {
      c.destroy(false);
      return;
    }
    // honour the upstream's Keep-Alive timeout hint, with a margin for the keep-alive race
    const hint = c.parser.keepAliveTimeoutMs;
    if (!this.pool.put(c.op, c, hint < 0 ? Infinity : hint - KEEP_ALIVE_MARGIN_MS)) c.destroy(false);
  }

  /** A slot freed up in `op`: open connections for queued requests. */
  wake(op: Origin): void {
    while (op.waiting > 0 && op.open < this.pool.maxConnsPerOrigin) {
      const w = op.dequeue();
      if (w === null) break;
      this.connect(op, w);
    }
  }

  /**
   * Close idle connections and stop pooling: requests in flight (and queued ones) complete,
   * each connection closes when its exchange ends.
   */
  close(): void {
    this.closed = true;
    this.pool.closeIdle();
  }

  /** Per-origin connection counts: `{ "http://h:p": { open, idle, waiting } }`. */
  stats(): Record<string, { open: number; idle: number; waiting: number }> {
    return this.pool.stats();
  }
}
