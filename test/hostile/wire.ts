// Wire-level helpers for the hostile-input tests: a raw TCP upstream that records every byte
// it receives and parses it with a deliberately strict HTTP/1.1 parser (anything a lenient
// server could read two ways is a "violation"), a raw client (TCP or TLS) and a parser for the
// responses the client got back.
import type { Socket } from "bun";
import { connect as tcpConnect, type Socket as NetSocket } from "node:net";
import { connect as tlsConnect } from "node:tls";

// ---------------------------------------------------------------------------------------------
// Strict request parser (what the upstream fixture accepts)

export interface WireRequest {
  /** Connection number (0-based, in accept order) and position of the request on it. */
  conn: number;
  index: number;
  method: string;
  target: string;
  version: string;
  /** Field lines as received: [name as sent, value]. */
  fields: [string, string][];
  framing: "none" | "length" | "chunked";
  body: Buffer;
  /** Trailer field lines of a chunked body. */
  trailers: [string, string][];
  /** The request exactly as received (head + body). */
  raw: Buffer;
}

export type ParseStep = { kind: "more" } | { kind: "error"; why: string } | { kind: "request"; req: Omit<WireRequest, "conn" | "index">; end: number };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** field-value: VCHAR / obs-text / SP / HTAB, no leading or trailing whitespace after trimming. */
const FIELD_VALUE = /^[\t\x20-\xff]*$/;
const METHOD = /^[A-Z]+$/;

/** A field line list's values for `name` (case-insensitive). */
export function fieldValues(fields: readonly [string, string][], name: string): string[] {
  const out: string[] = [];
  for (const [n, v] of fields) if (n.toLowerCase() === name) out.push(v);
  return out;
}

function checkLines(head: string, what: string): string | undefined {
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if (c === 13 && head.charCodeAt(i + 1) !== 10) return `bare CR in ${what} at ${i}`;
    if (c === 10 && head.charCodeAt(i - 1) !== 13) return `bare LF in ${what} at ${i}`;
    if (c === 0) return `NUL in ${what} at ${i}`;
  }
  return undefined;
}

function parseFieldLines(lines: string[], what: string): [string, string][] | string {
  const out: [string, string][] = [];
  for (const line of lines) {
    if (line.length === 0) return `empty line inside ${what}`;
    if (line[0] === " " || line[0] === "\t") return `obs-fold or leading whitespace in ${what}: ${JSON.stringify(line)}`;
    const colon = line.indexOf(":");
    if (colon <= 0) return `no field name in ${what}: ${JSON.stringify(line)}`;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return `field name is not a token in ${what}: ${JSON.stringify(name)}`;
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) return `control byte in the value of ${name}: ${JSON.stringify(value)}`;
    out.push([name, value]);
  }
  return out;
}

/**
 * Parse one request starting at `start`. Strict on purpose: one Host, at most one framing
 * field, Content-Length digits only, Transfer-Encoding exactly `chunked`, CRLF everywhere,
 * chunk sizes in hex without extensions' junk, no field name an upstream might fold into a
 * framing field (`content_length`, `transfer_encoding`).
 */
export function parseRequest(buf: Buffer, start = 0): ParseStep {
  const headEnd = buf.indexOf("\r\n\r\n", start, "latin1");
  if (headEnd < 0) {
    if (buf.length - start > 2 * 1024 * 1024) return { kind: "error", why: "head over 2 MiB" };
    return { kind: "more" };
  }
  const head = buf.toString("latin1", start, headEnd);
  const bad = checkLines(head, "head");
  if (bad) return { kind: "error", why: bad };
  const lines = head.split("\r\n");
  const rl = lines[0]!.split(" ");
  if (rl.length !== 3) return { kind: "error", why: `request line is not 3 parts: ${JSON.stringify(lines[0])}` };
  const [method, target, version] = rl as [string, string, string];
  if (!METHOD.test(method)) return { kind: "error", why: `odd method ${JSON.stringify(method)}` };
  if (version !== "HTTP/1.1") return { kind: "error", why: `version ${JSON.stringify(version)}` };
  if (!(target.startsWith("/") || (method === "OPTIONS" && target === "*"))) return { kind: "error", why: `target not origin-form: ${JSON.stringify(target)}` };
  if (/[\x00-\x20\x7f-\xff#]/.test(target)) return { kind: "error", why: `bad byte in target ${JSON.stringify(target)}` };
  const fields = parseFieldLines(lines.slice(1), "head");
  if (typeof fields === "string") return { kind: "error", why: fields };
  const hosts = fieldValues(fields, "host");
  if (hosts.length !== 1) return { kind: "error", why: `${hosts.length} Host fields` };
  for (const [n] of fields) {
    const l = n.toLowerCase().replace(/_/g, "-");
    if (l !== n.toLowerCase() && (l === "content-length" || l === "transfer-encoding" || l === "host")) return { kind: "error", why: `field ${n} aliases a framing/Host field` };
  }
  const cls = fieldValues(fields, "content-length");
  const tes = fieldValues(fields, "transfer-encoding");
  const bodyStart = headEnd + 4;
  const base = { method, target, version, fields, trailers: [] as [string, string][] };
  if (cls.length > 0 && tes.length > 0) return { kind: "error", why: "both Content-Length and Transfer-Encoding" };
  if (cls.length > 1) return { kind: "error", why: `${cls.length} Content-Length fields` };
  if (tes.length > 1) return { kind: "error", why: `${tes.length} Transfer-Encoding fields` };
  if (cls.length === 1) {
    if (!/^\d{1,15}$/.test(cls[0]!)) return { kind: "error", why: `Content-Length ${JSON.stringify(cls[0])}` };
    const n = Number(cls[0]);
    if (buf.length < bodyStart + n) return { kind: "more" };
    return {
      kind: "request",
      req: { ...base, framing: "length", body: Buffer.from(buf.subarray(bodyStart, bodyStart + n)), raw: Buffer.from(buf.subarray(start, bodyStart + n)) },
      end: bodyStart + n,
    };
  }
  if (tes.length === 1) {
    if (tes[0] !== "chunked") return { kind: "error", why: `Transfer-Encoding ${JSON.stringify(tes[0])}` };
    const parts: Buffer[] = [];
    let p = bodyStart;
    for (;;) {
      const eol = buf.indexOf("\r\n", p, "latin1");
      if (eol < 0) return buf.length - p > 4096 ? { kind: "error", why: "chunk-size line over 4 KiB" } : { kind: "more" };
      const line = buf.toString("latin1", p, eol);
      const m = /^([0-9A-Fa-f]{1,12})(;[!#$%&'*+.^_`|~0-9A-Za-z=;-]*)?$/.exec(line);
      if (!m) return { kind: "error", why: `chunk-size line ${JSON.stringify(line)}` };
      const size = parseInt(m[1]!, 16);
      const data = eol + 2;
      if (size === 0) {
        // trailer section, then CRLF
        const tEnd = buf.indexOf("\r\n", data, "latin1");
        if (tEnd < 0) return { kind: "more" };
        let trailers: [string, string][] = [];
        let end: number;
        if (tEnd === data) end = data + 2;
        else {
          const secEnd = buf.indexOf("\r\n\r\n", data, "latin1");
          if (secEnd < 0) return { kind: "more" };
          const sec = buf.toString("latin1", data, secEnd);
          const b2 = checkLines(sec, "trailers");
          if (b2) return { kind: "error", why: b2 };
          const t = parseFieldLines(sec.split("\r\n"), "trailers");
          if (typeof t === "string") return { kind: "error", why: t };
          trailers = t;
          end = secEnd + 4;
        }
        return {
          kind: "request",
          req: { ...base, trailers, framing: "chunked", body: Buffer.concat(parts), raw: Buffer.from(buf.subarray(start, end)) },
          end,
        };
      }
      if (buf.length < data + size + 2) return { kind: "more" };
      if (buf[data + size] !== 13 || buf[data + size + 1] !== 10) return { kind: "error", why: "chunk data not followed by CRLF" };
      parts.push(Buffer.from(buf.subarray(data, data + size)));
      p = data + size + 2;
    }
  }
  return { kind: "request", req: { ...base, framing: "none", body: Buffer.alloc(0), raw: Buffer.from(buf.subarray(start, bodyStart)) }, end: bodyStart };
}

// ---------------------------------------------------------------------------------------------
// Recording upstream

export interface RecordingUpstream {
  url: string;
  port: number;
  /** Complete requests, in order of completion. */
  requests: WireRequest[];
  /** Protocol violations seen (the connection was closed after each). */
  violations: string[];
  /** Every byte received, per connection. */
  raw: Buffer[];
  /** Requests cut short: bytes left unparsed when their connection closed. */
  partials: { conn: number; bytes: Buffer }[];
  /** Connections accepted. */
  connections: number;
  /** Connections currently open. */
  open: number;
  /** Forget everything recorded so far (open connections keep their parse state). */
  reset(): void;
  /** Bytes received on connections that are not yet a complete request. */
  pendingBytes(): number;
  stop(): void;
}

interface ConnState {
  id: number;
  buf: Buffer;
  index: number;
  all: Buffer[];
}

/**
 * Raw TCP upstream (Bun.listen). Each complete request is answered `200` with a small body
 * `ok <method> <target> <body bytes>\n`; a violation is recorded and the connection closed.
 * `answer` may replace the response bytes.
 */
export function recordingUpstream(answer?: (r: WireRequest) => string | Buffer): RecordingUpstream {
  const live = new Set<Socket<ConnState>>();
  const fx: RecordingUpstream = {
    url: "",
    port: 0,
    requests: [],
    violations: [],
    raw: [],
    partials: [],
    connections: 0,
    open: 0,
    reset() {
      fx.requests = [];
      fx.violations = [];
      fx.raw = [];
      fx.partials = [];
      for (const s of live) s.data.all = [];
    },
    pendingBytes() {
      let n = 0;
      for (const s of live) n += s.data.buf.length;
      return n;
    },
    stop: () => {},
  };
  const l = Bun.listen<ConnState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { id: fx.connections++, buf: Buffer.alloc(0), index: 0, all: [] };
        fx.open++;
        live.add(s);
      },
      data(s, chunk) {
        const st = s.data;
        const c = Buffer.from(chunk);
        st.all.push(c);
        fx.raw.push(c);
        st.buf = st.buf.length === 0 ? c : Buffer.concat([st.buf, c]);
        for (;;) {
          const r = parseRequest(st.buf, 0);
          if (r.kind === "more") return;
          if (r.kind === "error") {
            fx.violations.push(`conn ${st.id}: ${r.why}`);
            st.buf = Buffer.alloc(0);
            s.end();
            return;
          }
          const req: WireRequest = { ...r.req, conn: st.id, index: st.index++ };
          fx.requests.push(req);
          st.buf = st.buf.subarray(r.end);
          const body = `ok ${req.method} ${req.target} ${req.body.length}\n`;
          s.write(answer ? answer(req) : `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        }
      },
      close(s) {
        if (s.data.buf.length > 0) fx.partials.push({ conn: s.data.id, bytes: s.data.buf });
        fx.open--;
        live.delete(s);
      },
      error() {},
    },
  });
  fx.port = l.port;
  fx.url = `http://127.0.0.1:${l.port}`;
  fx.stop = () => l.stop(true);
  return fx;
}

// ---------------------------------------------------------------------------------------------
// Raw client

export interface RawResult {
  bytes: Buffer;
  /** The server closed (or reset) the connection before the deadline. */
  closed: boolean;
  /** The deadline passed with the connection still open. */
  timedOut: boolean;
  ms: number;
}

export interface RawOptions {
  tls?: boolean;
  /** Give up (and close) after this long. Default 5 s. */
  deadlineMs?: number;
  /** Stop as soon as this many complete responses arrived (else wait for the close). */
  responses?: number;
  /** Delay between the pieces of `data` when it is an array. */
  gapMs?: number;
}

/** Send `data` (pieces written one by one), collect what comes back until close or deadline. */
export function rawRequest(port: number, data: string | Buffer | (string | Buffer)[], opts: RawOptions = {}): Promise<RawResult> {
  const pieces = (Array.isArray(data) ? data : [data]).map((d) => (typeof d === "string" ? Buffer.from(d, "latin1") : d));
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s: NetSocket = opts.tls ? tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: false, servername: "localhost", ALPNProtocols: ["http/1.1"] }) : tcpConnect(port, "127.0.0.1");
    const got: Buffer[] = [];
    let finished = false;
    const finish = (closed: boolean, timedOut: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes: Buffer.concat(got), closed, timedOut, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(false, true), opts.deadlineMs ?? 5000);
    s.on("data", (d: Buffer) => {
      got.push(d);
      if (opts.responses !== undefined) {
        const p = parseResponses(Buffer.concat(got));
        if (p.responses.filter((r) => r.complete).length >= opts.responses) finish(false, false);
      }
    });
    s.on("close", () => finish(true, false));
    s.on("error", () => {});
    const ready = opts.tls ? "secureConnect" : "connect";
    s.once(ready, async () => {
      for (let i = 0; i < pieces.length; i++) {
        if (i > 0 && opts.gapMs) await Bun.sleep(opts.gapMs);
        if (finished) return;
        s.write(pieces[i]!); // no half-close: Bun.serve drops a request whose client already sent FIN
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Response parser (client side)

export interface WireResponse {
  status: number;
  headers: [string, string][];
  body: Buffer;
  /** The whole message arrived (by Content-Length, chunked end, or close-delimited + closed). */
  complete: boolean;
}

/**
 * Parse a sequence of HTTP/1.1 responses. `garbage` is set when bytes follow that are not a
 * response; `partial` when the last response is cut short (a half answer).
 */
export function parseResponses(buf: Buffer, closed = false, headRequest = false): { responses: WireResponse[]; garbage: boolean; partial: boolean } {
  const out: WireResponse[] = [];
  let p = 0;
  while (p < buf.length) {
    if (!buf.toString("latin1", p, p + 5).startsWith("HTTP/".slice(0, Math.min(5, buf.length - p)))) return { responses: out, garbage: true, partial: false };
    const he = buf.indexOf("\r\n\r\n", p, "latin1");
    if (he < 0) return { responses: out, garbage: false, partial: true };
    const lines = buf.toString("latin1", p, he).split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]!);
    if (!m) return { responses: out, garbage: true, partial: false };
    const status = Number(m[1]);
    const headers: [string, string][] = lines.slice(1).map((l) => {
      const c = l.indexOf(":");
      return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()];
    });
    const cl = headers.find((h) => h[0] === "content-length")?.[1];
    const te = headers.find((h) => h[0] === "transfer-encoding")?.[1];
    const bs = he + 4;
    if (headRequest || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      out.push({ status, headers, body: Buffer.alloc(0), complete: true });
      p = bs;
      continue;
    }
    if (te !== undefined && /chunked/i.test(te)) {
      const parts: Buffer[] = [];
      let q = bs;
      let done = false;
      for (;;) {
        const eol = buf.indexOf("\r\n", q, "latin1");
        if (eol < 0) break;
        const size = parseInt(buf.toString("latin1", q, eol), 16);
        if (Number.isNaN(size)) return { responses: out, garbage: true, partial: false };
        if (size === 0) {
          const end = buf.indexOf("\r\n\r\n", eol, "latin1");
          if (end < 0) break;
          q = end + 4;
          done = true;
          break;
        }
        if (buf.length < eol + 2 + size + 2) break;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        q = eol + 2 + size + 2;
      }
      out.push({ status, headers, body: Buffer.concat(parts), complete: done });
      if (!done) return { responses: out, garbage: false, partial: true };
      p = q;
      continue;
    }
    if (cl !== undefined) {
      const n = Number(cl);
      const have = Math.min(n, buf.length - bs);
      out.push({ status, headers, body: buf.subarray(bs, bs + have), complete: have === n });
      if (have < n) return { responses: out, garbage: false, partial: true };
      p = bs + n;
      continue;
    }
    // close-delimited
    out.push({ status, headers, body: buf.subarray(bs), complete: closed });
    return { responses: out, garbage: false, partial: !closed };
  }
  return { responses: out, garbage: false, partial: false };
}

/** Poll `cond` until it holds; throw after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}
