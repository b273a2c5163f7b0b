// Incremental HTTP/1.1 response parser: the head (status line + fields) and the body framing
// (Content-Length, chunked, close-delimited, none), over the Buffers a socket delivers.
//
// Pull style, no callbacks: `execute(buf, pos)` consumes bytes and returns one step (MORE,
// HEAD, BODY, DONE, ERROR); the caller reads the outputs from fields and calls again from
// `parser.pos`. Body steps are byte ranges of the caller's buffer (no copy). Interim 1xx
// responses (100, 102, 103, …) are skipped; a 101 answers HEAD only when an upgrade was asked
// for, and the bytes after it are left to the caller (`pos`).
//
// Strict where leniency enables response smuggling or desync (RFC 9112 §6.3, §11.2): bare CR or
// LF, obs-fold, NUL/control bytes, a space before the colon, an invalid field name, any
// duplicate or non-numeric Content-Length, Content-Length with Transfer-Encoding, a
// Transfer-Encoding other than exactly `chunked`, bad chunk sizes, an over-long head → ERROR.
// The whole head is validated by one regular expression (one pass, no per-line regex), then
// split with indexOf; the fields that matter to framing are recognised without lower-cased
// copies (lowerEq: measured 1.55 → 0.85 µs for a typical nginx head).
import { lowerEq } from "../../ascii.ts";

export const STEP_MORE = 0;
export const STEP_HEAD = 1;
export const STEP_BODY = 2;
export const STEP_DONE = 3;
export const STEP_ERROR = 4;
export type Step = 0 | 1 | 2 | 3 | 4;

/** How the body of the current response is delimited. */
export const FRAMING_NONE = 0;
export const FRAMING_LENGTH = 1;
export const FRAMING_CHUNKED = 2;
export const FRAMING_CLOSE = 3;
export type Framing = 0 | 1 | 2 | 3;

const S_HEAD = 0;
const S_LENGTH = 1; // Content-Length body
const S_CLOSE = 2; // close-delimited body
const S_CHUNK_SIZE = 3;
const S_CHUNK_EXT = 4;
const S_CHUNK_SIZE_LF = 5;
const S_CHUNK_DATA = 6;
const S_CHUNK_DATA_CR = 7;
const S_CHUNK_DATA_LF = 8;
const S_TRAILER_START = 9; // at the start of a trailer line (or the final CRLF)
const S_TRAILER_LINE = 10;
const S_TRAILER_LF = 11;
const S_FINAL_LF = 12;
const S_DONE_PENDING = 13; // head without body: the next execute() says DONE
const S_DONE = 14;
const S_UPGRADED = 15;
const S_ERROR = 16;
const S_CHUNK_BWS = 17; // whitespace after the chunk size: only ";" or CRLF may follow

/**
 * One regular expression for the whole head (status line and field lines, each with its CRLF,
 * without the final empty line). Token names (no space before the colon, no obs-fold since a
 * line cannot start with SP/HTAB), values of HTAB / VCHAR / SP / obs-text only (no NUL, no bare
 * CR or LF, no other control). Linear: every repeated class excludes the byte that ends it.
 */
const HEAD_RE = /^HTTP\/1\.[01] \d\d\d(?: [\t\x20-\x7e\x80-\xff]*)?\r\n(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*$/;

const NO_HEADERS: string[] = [];
/** Heads up to this size are remembered (see ResponseParser.memo). */
const MEMO_MAX_BYTES = 4096;
const CR = 13;
const LF = 10;
/** "\r\n\r\n" as a Buffer: Buffer#indexOf with a Buffer needle is several times faster than with a string. */
const HEAD_END = Buffer.from("\r\n\r\n");
const MAX_CHUNK_LINE = 64 * 1024;
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

export interface ParserOptions {
  /** Upper bound of a response head (and of a trailer section), bytes. Default 64 KiB. */
  maxHeaderBytes?: number;
}

export class ResponseParser {
  readonly maxHeaderBytes: number;

  // --- outputs of the current response (valid after HEAD) ---
  status = 0;
  statusText = "";
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor = 1;
  /**
   * Field lines as they arrived: [name, value, name, value, …], names in their original case.
   * The same array for later responses with the same head (see `memo`): never modify it.
   */
  headers: readonly string[] = NO_HEADERS;
  framing: Framing = FRAMING_NONE;
  /** Declared Content-Length, or -1. */
  contentLength = -1;
  /** Neither side's framing nor Connection forbids reusing the connection after this response. */
  keepAlive = true;
  /** `Keep-Alive: timeout=N` of the response in ms, or -1. */
  keepAliveTimeoutMs = -1;
  /** A 101 to an upgrade request: the bytes from `pos` on belong to the new protocol. */
  upgraded = false;
  /** Byte range of the buffer passed to execute() for a BODY step. */
  bodyStart = 0;
  bodyEnd = 0;
  /** Where the next execute() call continues in the current buffer. */
  pos = 0;
  /** Reason of an ERROR step. */
  error = "";

  // --- internal ---
  private state = S_HEAD;
  private noBody = false;
  private expectUpgrade = false;
  private remaining = 0; // bytes left in a Content-Length body or the current chunk
  private lineBytes = 0; // bytes of the current chunk-size line / trailer section
  private sizeDigits = 0;
  private headBuf: Buffer | null = null;
  private headLen = 0;
  /** The framing the last parsed head declares (before HEAD / 204 / 304 make it none). */
  private parsedFraming: Framing = FRAMING_NONE;
  private parsedKeepAlive = true;
  // The last final head parsed whole from one read, byte for byte, and what it parsed to: an
  // upstream answers a run of requests with the same head (nginx's changes with its Date, once
  // a second), and a head equal to it is taken from here without a string, a regular
  // expression or a split (memoHeaders is then the same array: read-only to callers).
  private memo: Buffer | null = null;
  private memoLen = 0;
  private memoStatus = 0;
  private memoStatusText = "";
  private memoMinor = 1;
  private memoHeaders: readonly string[] = NO_HEADERS;
  private memoLength = -1;
  private memoFraming: Framing = FRAMING_NONE;
  private memoKeepAlive = true;
  private memoKeepAliveMs = -1;

  constructor(opts: ParserOptions = {}) {
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 64 * 1024;
  }

  /** Prepare for the response to a new request. `noBody` for HEAD; `expectUpgrade` to accept a 101. */
  reset(noBody: boolean, expectUpgrade: boolean): void {
    this.state = S_HEAD;
    this.noBody = noBody;
    this.expectUpgrade = expectUpgrade;
    this.status = 0;
    this.statusText = "";
    this.minor = 1;
    this.headers = NO_HEADERS;
    this.framing = FRAMING_NONE;
    this.contentLength = -1;
    this.keepAlive = true;
    this.keepAliveTimeoutMs = -1;
    this.upgraded = false;
    this.error = "";
    this.remaining = 0;
    this.lineBytes = 0;
    this.sizeDigits = 0;
    this.headLen = 0;
  }

  /** True until a final (non-1xx) head has been parsed. */
  get inHead(): boolean {
    return this.state === S_HEAD;
  }

  /** True once the current response has been read completely. */
  get done(): boolean {
    return this.state === S_DONE;
  }

  /**
   * The connection reached EOF. DONE for a close-delimited body (the end of the response), else
   * ERROR (a truncated head or body: never presented as complete).
   */
  finish(): Step {
    if (this.state === S_CLOSE) {
      this.state = S_DONE;
      return STEP_DONE;
    }
    if (this.state === S_DONE || this.state === S_DONE_PENDING) {
      this.state = S_DONE;
      return STEP_DONE;
    }
    if (this.state === S_ERROR) return STEP_ERROR;
    return this.fail(this.state === S_HEAD ? "connection closed before the response head" : "connection closed before the end of the body");
  }

  private fail(reason: string): Step {
    this.state = S_ERROR;
    this.error = reason;
    return STEP_ERROR;
  }

  /** Consume from `buf[pos]`; see the module comment. */
  execute(buf: Buffer, pos: number): Step {
    const end = buf.length;
    for (;;) {
      switch (this.state) {
        case S_HEAD: {
          if (pos >= end) {
            this.pos = pos;
            return STEP_MORE;
          }
          this.pos = pos;
          const r = this.head(buf, pos);
          if (r !== -1) return r as Step;
          pos = this.pos; // skipped an interim 1xx: parse the next head
          continue;
        }
        case S_LENGTH: {
          if (pos >= end) {
            this.pos = pos;
            return STEP_MORE;
          }
          const n = Math.min(end - pos, this.remaining);
          this.remaining -= n;
          this.bodyStart = pos;
          this.bodyEnd = pos + n;
          this.pos = pos + n;
          if (this.remaining === 0) this.state = S_DONE_PENDING;
          return STEP_BODY;
        }
        case S_CLOSE: {
          if (pos >= end) {
            this.pos = pos;
            return STEP_MORE;
          }
          this.bodyStart = pos;
          this.bodyEnd = end;
          this.pos = end;
          return STEP_BODY;
        }
        case S_CHUNK_DATA: {
          if (pos >= end) {
            this.pos = pos;
            return STEP_MORE;
          }
          const n = Math.min(end - pos, this.remaining);
          this.remaining -= n;
          this.bodyStart = pos;
          this.bodyEnd = pos + n;
          this.pos = pos + n;
          if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
          return STEP_BODY;
        }
        case S_CHUNK_SIZE:
        case S_CHUNK_BWS:
        case S_CHUNK_EXT:
        case S_CHUNK_SIZE_LF:
        case S_CHUNK_DATA_CR:
        case S_CHUNK_DATA_LF:
        case S_TRAILER_START:
        case S_TRAILER_LINE:
        case S_TRAILER_LF:
        case S_FINAL_LF: {
          const r = this.chunkFraming(buf, pos, end);
          if (r !== -1) return r as Step;
          pos = this.pos;
          continue;
        }
        case S_DONE_PENDING:
          this.state = S_DONE;
          this.pos = pos;
          return STEP_DONE;
        case S_DONE:
          // bytes after a complete response, before the next request: the caller decides
          this.pos = pos;
          return STEP_DONE;
        case S_UPGRADED:
          this.pos = pos;
          return STEP_DONE;
        default:
          this.pos = pos;
          return STEP_ERROR;
      }
    }
  }

  /**
   * The chunk-size line, chunk CRLFs, the last chunk and the trailer section, byte by byte.
   * Returns a step, or -1 when the state changed to chunk data (continue in execute()).
   */
  private chunkFraming(buf: Buffer, pos: number, end: number): number {
    let state = this.state;
    while (pos < end) {
      const c = buf[pos]!;
      switch (state) {
        case S_CHUNK_SIZE: {
          const d = HEX[c]!;
          if (d >= 0) {
            if (++this.sizeDigits > 13) return this.failAt(pos, "chunk size too large");
            this.remaining = this.remaining * 16 + d;
            pos++;
            break;
          }
          if (this.sizeDigits === 0) return this.failAt(pos, "invalid chunk size");
          if (c === CR) state = S_CHUNK_SIZE_LF;
          else if (c === 0x3b /* ; */) state = S_CHUNK_EXT;
          else if (c === 0x20 || c === 0x09) state = S_CHUNK_BWS;
          else return this.failAt(pos, "invalid chunk size");
          pos++;
          this.lineBytes++;
          break;
        }
        case S_CHUNK_BWS: {
          if (c === CR) state = S_CHUNK_SIZE_LF;
          else if (c === 0x3b) state = S_CHUNK_EXT;
          else if (c !== 0x20 && c !== 0x09) return this.failAt(pos, "invalid chunk size");
          if (++this.lineBytes > MAX_CHUNK_LINE) return this.failAt(pos, "chunk extension too long");
          pos++;
          break;
        }
        case S_CHUNK_EXT: {
          // chunk extensions are ignored; they may hold any visible byte, SP or HTAB
          if (c === CR) state = S_CHUNK_SIZE_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.failAt(pos, "invalid chunk extension");
          if (++this.lineBytes > MAX_CHUNK_LINE) return this.failAt(pos, "chunk extension too long");
          pos++;
          break;
        }
        case S_CHUNK_SIZE_LF: {
          if (c !== LF) return this.failAt(pos, "bare CR in chunk size line");
          pos++;
          this.lineBytes = 0;
          this.sizeDigits = 0;
          if (this.remaining === 0) {
            state = S_TRAILER_START;
          } else {
            this.state = S_CHUNK_DATA;
            this.pos = pos;
            return -1;
          }
          break;
        }
        case S_CHUNK_DATA_CR:
          if (c !== CR) return this.failAt(pos, "missing CRLF after chunk data");
          state = S_CHUNK_DATA_LF;
          pos++;
          break;
        case S_CHUNK_DATA_LF:
          if (c !== LF) return this.failAt(pos, "missing CRLF after chunk data");
          state = S_CHUNK_SIZE;
          this.remaining = 0;
          pos++;
          break;
        case S_TRAILER_START:
          if (c === CR) state = S_FINAL_LF;
          else if (c === LF || c === 0x20 || c === 0x09) return this.failAt(pos, "invalid trailer");
          else state = S_TRAILER_LINE;
          if (++this.lineBytes > this.maxHeaderBytes) return this.failAt(pos, "trailers too large");
          pos++;
          break;
        case S_TRAILER_LINE:
          // trailer fields are discarded: only their framing is checked
          if (c === CR) state = S_TRAILER_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.failAt(pos, "invalid trailer");
          if (++this.lineBytes > this.maxHeaderBytes) return this.failAt(pos, "trailers too large");
          pos++;
          break;
        case S_TRAILER_LF:
          if (c !== LF) return this.failAt(pos, "bare CR in trailer");
          state = S_TRAILER_START;
          pos++;
          break;
        case S_FINAL_LF:
          if (c !== LF) return this.failAt(pos, "bare CR after last chunk");
          pos++;
          this.state = S_DONE;
          this.pos = pos;
          return STEP_DONE;
      }
    }
    this.state = state;
    this.pos = pos;
    return STEP_MORE;
  }

  private failAt(pos: number, reason: string): Step {
    this.pos = pos;
    return this.fail(reason);
  }

  /** Find the end of the head (maybe across buffers) and parse it; -1 = an interim 1xx was skipped. */
  private head(buf: Buffer, pos: number): number {
    const end = buf.length;
    if (this.headLen === 0) {
      const idx = buf.indexOf(HEAD_END, pos);
      if (idx >= 0) {
        if (idx + 4 - pos > this.maxHeaderBytes) {
          this.pos = pos;
          return this.fail("response head too large");
        }
        this.pos = idx + 4;
        const len = idx + 2 - pos;
        if (len === this.memoLen && buf.compare(this.memo!, 0, len, pos, idx + 2) === 0) return this.fromMemo();
        const r = this.parseHead(buf.toString("latin1", pos, idx + 2));
        if (r === STEP_HEAD && !this.upgraded && len <= MEMO_MAX_BYTES) this.remember(buf, pos, len);
        return r;
      }
    }
    // the head spans buffers: keep it (bounded), and fail early on garbage
    const prev = this.headLen;
    const cap = this.maxHeaderBytes + 4;
    const n = Math.min(end - pos, cap - prev);
    let hb = this.headBuf;
    if (hb === null || hb.length < prev + n) {
      const grown = Buffer.allocUnsafe(Math.min(cap, Math.max(1024, (prev + n) * 2)));
      if (hb !== null && prev > 0) hb.copy(grown, 0, 0, prev);
      hb = this.headBuf = grown;
    }
    buf.copy(hb, prev, pos, pos + n);
    const have = prev + n;
    this.headLen = have;
    const idx = prev === 0 ? -1 : findHeadEnd(hb, prev >= 3 ? prev - 3 : 0, have);
    const checkTo = idx >= 0 ? idx + 4 : have;
    for (let i = 0; i < 5 && i < checkTo; i++) if (hb[i] !== PREFIX[i]) return this.fail("not an HTTP/1.x response");
    for (let i = prev > 0 ? prev : 1; i < checkTo; i++) {
      const c = hb[i]!;
      if (c === LF && hb[i - 1] !== CR) return this.fail("bare LF in response head");
      if (hb[i - 1] === CR && c !== LF) return this.fail("bare CR in response head");
    }
    if (idx < 0) {
      if (have >= this.maxHeaderBytes) return this.fail("response head too large");
      this.pos = end;
      return STEP_MORE;
    }
    if (idx + 4 > this.maxHeaderBytes) return this.fail("response head too large");
    // the head ends inside this buffer: the bytes after it are the caller's again
    this.headLen = 0;
    this.pos = pos + (idx + 4 - prev);
    const head = hb.toString("latin1", 0, idx + 2);
    if (hb.length > 4096) this.headBuf = null; // do not keep a large buffer per connection
    return this.parseHead(head);
  }

  /** Parse a complete head (status line + field lines, each ending in CRLF); -1 = interim 1xx. */
  private parseHead(s: string): number {
    if (!HEAD_RE.test(s)) return this.fail(s.startsWith("HTTP/1.") ? "malformed response head" : "not an HTTP/1.x response");
    const minor = s.charCodeAt(7) - 48;
    const status = (s.charCodeAt(9) - 48) * 100 + (s.charCodeAt(10) - 48) * 10 + (s.charCodeAt(11) - 48);
    if (status < 100 || status > 599) return this.fail(`invalid status ${status}`);
    const lineEnd = s.indexOf("\r\n");

    if (status < 200 && status !== 101) {
      // interim response (100 Continue, 102, 103 Early Hints): skipped; parse the next head
      return -1;
    }

    const headers: string[] = [];
    let cl = -1;
    let te: string | null = null;
    let connClose = false;
    let connKeepAlive = false;
    let kaTimeout = -1;
    const len = s.length;
    let p = lineEnd + 2;
    while (p < len) {
      const e = s.indexOf("\r\n", p);
      const colon = s.indexOf(":", p);
      let vs = colon + 1;
      while (vs < e) {
        const c = s.charCodeAt(vs);
        if (c !== 32 && c !== 9) break;
        vs++;
      }
      let ve = e;
      while (ve > vs) {
        const c = s.charCodeAt(ve - 1);
        if (c !== 32 && c !== 9) break;
        ve--;
      }
      const name = s.slice(p, colon);
      const value = s.slice(vs, ve);
      headers.push(name, value);
      switch (colon - p) {
        case 14:
          if (lowerEq(s, p, "content-length")) {
            if (cl !== -1) return this.fail("duplicate Content-Length");
            cl = parseLength(value);
            if (cl < 0) return this.fail("invalid Content-Length");
          }
          break;
        case 17:
          if (lowerEq(s, p, "transfer-encoding")) te = te === null ? value : `${te}, ${value}`;
          break;
        case 10: {
          if (lowerEq(s, p, "connection")) {
            const vl = ve - vs;
            if (vl === 10 && lowerEq(s, vs, "keep-alive")) connKeepAlive = true;
            else if (vl === 5 && lowerEq(s, vs, "close")) connClose = true;
            else
              for (const t of value.toLowerCase().split(",")) {
                const tt = t.trim();
                if (tt === "close") connClose = true;
                else if (tt === "keep-alive") connKeepAlive = true;
              }
          } else if (lowerEq(s, p, "keep-alive")) kaTimeout = keepAliveTimeout(value);
          break;
        }
      }
      p = e + 2;
    }

    let framing: Framing;
    if (te !== null) {
      if (cl !== -1) return this.fail("Content-Length with Transfer-Encoding");
      if (te.trim().toLowerCase() !== "chunked") return this.fail(`unsupported Transfer-Encoding: ${te}`);
      framing = FRAMING_CHUNKED;
    } else if (cl !== -1) framing = FRAMING_LENGTH;
    else framing = FRAMING_CLOSE;

    this.minor = minor;
    this.status = status;
    this.statusText = lineEnd > 13 ? s.slice(13, lineEnd) : "";
    this.headers = headers;
    this.contentLength = cl;
    this.keepAlive = !connClose && (minor === 1 || connKeepAlive);
    this.keepAliveTimeoutMs = kaTimeout;
    this.parsedFraming = framing;
    this.parsedKeepAlive = this.keepAlive;

    if (status === 101) {
      if (!this.expectUpgrade) return this.fail("101 without an upgrade request");
      this.upgraded = true;
      this.framing = FRAMING_NONE;
      this.keepAlive = false;
      this.state = S_UPGRADED;
      return STEP_HEAD;
    }
    return this.enter(framing);
  }

  /** Keep the head just parsed (`len` bytes of `buf` from `pos`) and its outputs. */
  private remember(buf: Buffer, pos: number, len: number): void {
    let m = this.memo;
    if (m === null || m.length < len) m = this.memo = Buffer.allocUnsafeSlow(Math.max(len, 512));
    buf.copy(m, 0, pos, pos + len);
    this.memoLen = len;
    this.memoStatus = this.status;
    this.memoStatusText = this.statusText;
    this.memoMinor = this.minor;
    this.memoHeaders = this.headers;
    this.memoLength = this.contentLength;
    this.memoFraming = this.parsedFraming;
    this.memoKeepAlive = this.parsedKeepAlive;
    this.memoKeepAliveMs = this.keepAliveTimeoutMs;
  }

  /** The outputs of the remembered head (the same bytes arrived again). */
  private fromMemo(): Step {
    this.status = this.memoStatus;
    this.statusText = this.memoStatusText;
    this.minor = this.memoMinor;
    this.headers = this.memoHeaders;
    this.contentLength = this.memoLength;
    this.keepAlive = this.memoKeepAlive;
    this.keepAliveTimeoutMs = this.memoKeepAliveMs;
    return this.enter(this.memoFraming);
  }

  /** Set up the body state of a final, non-101 head whose own framing is `framing`. */
  private enter(framing: Framing): Step {
    const status = this.status;
    const cl = this.contentLength;
    if (this.noBody || status === 204 || status === 304) framing = FRAMING_NONE;
    this.framing = framing;
    switch (framing) {
      case FRAMING_NONE:
        this.state = S_DONE_PENDING;
        break;
      case FRAMING_LENGTH:
        if (cl === 0) this.state = S_DONE_PENDING;
        else {
          this.state = S_LENGTH;
          this.remaining = cl;
        }
        break;
      case FRAMING_CHUNKED:
        this.state = S_CHUNK_SIZE;
        this.remaining = 0;
        this.sizeDigits = 0;
        this.lineBytes = 0;
        break;
      default:
        this.state = S_CLOSE;
        this.keepAlive = false;
    }
    return STEP_HEAD;
  }
}

const PREFIX = [72, 84, 84, 80, 47]; // "HTTP/"

/** Index of "\r\n\r\n" in b[from..to), or -1 (bytes past `to` are stale). */
function findHeadEnd(b: Buffer, from: number, to: number): number {
  for (let i = from; i + 3 < to; i++) if (b[i] === CR && b[i + 1] === LF && b[i + 2] === CR && b[i + 3] === LF) return i;
  return -1;
}

/** The `timeout=N` parameter of a Keep-Alive header (seconds) in ms, else -1. */
function keepAliveTimeout(v: string): number {
  const lv = v.toLowerCase();
  const i = lv.indexOf("timeout=");
  if (i < 0 || (i > 0 && lv.charCodeAt(i - 1) !== 32 && lv.charCodeAt(i - 1) !== 44 && lv.charCodeAt(i - 1) !== 9)) return -1;
  let j = i + 8;
  let n = 0;
  let digits = 0;
  for (; j < lv.length && digits < 9; j++, digits++) {
    const d = lv.charCodeAt(j) - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  return digits === 0 ? -1 : n * 1000;
}

/** 1*DIGIT as a safe integer, else -1 (no sign, no spaces, no list). */
function parseLength(v: string): number {
  const n = v.length;
  if (n === 0 || n > 15) return -1;
  let x = 0;
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    x = x * 10 + d;
  }
  return x;
}
