// A tiny HTTP/2 client for abuse tests (RFC 9113 framing, RFC 7541 HPACK): it writes exactly the
// frames a test asks for — also ones no real client would send (uppercase field names,
// connection-specific fields, floods of RST_STREAM or CONTINUATION) — over a plain socket (h2c
// prior knowledge) or TLS (ALPN "h2"), and parses what comes back.
//
// - Encoding: field blocks use "literal header field without indexing — new name" only, with
//   raw (not Huffman) strings, so every byte of a name is sent as given.
// - Decoding: a complete HPACK decoder (static + dynamic table, Huffman), because servers
//   compress their responses.
// - The connection answers SETTINGS and PING by itself, and by default returns every DATA byte
//   as WINDOW_UPDATEs (connection and stream) as soon as it arrives; `autoWindow: false` leaves
//   flow control to the test.
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
export const ERROR = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;
export const ERROR_NAME: Record<number, string> = Object.fromEntries(Object.entries(ERROR).map(([k, v]) => [v, k]));

const SETTING_INITIAL_WINDOW = SETTING.INITIAL_WINDOW_SIZE;

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

// ---------------------------------------------------------------------------------------------
// Frames

export function frame(type: number, flags: number, stream: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream & 0x7fffffff, 5);
  b.set(payload, 9);
  return b;
}

export function settingsFrame(entries: readonly (readonly [number, number])[] = [], ack = false): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, ack ? FLAG.ACK : 0, 0, p);
}

export function headersFrame(stream: number, block: Uint8Array, o: { endStream?: boolean; endHeaders?: boolean } = {}): Buffer {
  return frame(FRAME.HEADERS, (o.endStream ? FLAG.END_STREAM : 0) | (o.endHeaders === false ? 0 : FLAG.END_HEADERS), stream, block);
}

export function continuationFrame(stream: number, block: Uint8Array, endHeaders: boolean): Buffer {
  return frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, stream, block);
}

export function dataFrame(stream: number, data: Uint8Array, endStream = false): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, data);
}

export function rstStreamFrame(stream: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, stream, p);
}

export function windowUpdateFrame(stream: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment & 0x7fffffff);
  return frame(FRAME.WINDOW_UPDATE, 0, stream, p);
}

export function pingFrame(opaque: Uint8Array, ack = false): Buffer {
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, opaque);
}

export function goawayFrame(lastStream: number, code: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStream & 0x7fffffff);
  p.writeUInt32BE(code, 4);
  return frame(FRAME.GOAWAY, 0, 0, p);
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Splits a byte stream into frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Frame[] = [];
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      out.push({ type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) });
      this.buf = this.buf.subarray(9 + len);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// HPACK

function encodeInt(out: number[], value: number, prefixBits: number, firstByte: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function encodeRawString(out: number[], s: string): void {
  const bytes = Buffer.from(s, "latin1");
  encodeInt(out, bytes.length, 7, 0x00);
  for (const b of bytes) out.push(b);
}

/**
 * A field block of "literal without indexing, new name" representations with raw strings: names
 * and values go on the wire byte for byte (no lowercasing, no validation).
 */
export function encodeFields(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [n, v] of fields) {
    out.push(0x00);
    encodeRawString(out, n);
    encodeRawString(out, v);
  }
  return Buffer.from(out);
}

const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""],
  ["etag", ""], ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""],
  ["if-modified-since", ""], ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""],
  ["last-modified", ""], ["link", ""], ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""],
  ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""], ["retry-after", ""],
  ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""], ["transfer-encoding", ""],
  ["user-agent", ""], ["vary", ""], ["via", ""], ["www-authenticate", ""],
];

// Huffman code bit lengths for symbols 0..256 (RFC 7541 Appendix B), one base-36 digit each.
// The code is canonical (codes assigned in order of length, then symbol), so lengths suffice.
const HUFFMAN_LENGTHS =
  "DNSSSSSSSOUSSUSSSSSSSSUSSSSSSSSS6AACD68BAA8B8666555666666678F6CAD67777777777777777777777878DJDE6F56565666577666567655677777FBEDSKMKKMMMNMNNNNNONOOMNONNNNLMNMNNOMLKMMNNLNMMOLMNNLLMLNMNNKMMMNMMNQQKJMNMPQQQRRQOPJLQRRQROLLQQSRRRKOKLMLLNMMPPOOQNQRQQRRRRRSRRRRRQU";

/** Decoding tree: node = [child0, child1]; a leaf is a symbol number stored as -(sym + 1). */
const HUFFMAN_TREE: number[][] = (() => {
  const lens = [...HUFFMAN_LENGTHS].map((c) => parseInt(c, 36));
  const order = lens.map((l, s) => [l, s] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const tree: number[][] = [[0, 0]];
  let code = 0;
  let prev = order[0]![0];
  order.forEach(([len, sym], i) => {
    if (i > 0) code = (code + 1) * 2 ** (len - prev);
    prev = len;
    let node = 0;
    for (let bit = len - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) & 1;
      if (bit === 0) tree[node]![b] = -(sym + 1);
      else {
        if (tree[node]![b] === 0) {
          tree.push([0, 0]);
          tree[node]![b] = tree.length - 1;
        }
        node = tree[node]![b]!;
      }
    }
  });
  return tree;
})();

export function huffmanDecode(bytes: Uint8Array): string {
  let node = 0;
  let out = "";
  let depth = 0;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const next = HUFFMAN_TREE[node]![(byte >> bit) & 1]!;
      depth++;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === 256) throw new Error("hpack: EOS in a Huffman string");
        out += String.fromCharCode(sym);
        node = 0;
        depth = 0;
      } else if (next === 0) throw new Error("hpack: bad Huffman code");
      else node = next;
    }
  }
  if (depth > 7) throw new Error("hpack: Huffman padding longer than 7 bits");
  return out;
}

export class HpackDecoder {
  private dynamic: [string, string][] = [];
  private size = 0;
  constructor(private maxSize = 4096) {}

  decode(block: Uint8Array): [string, string][] {
    const out: [string, string][] = [];
    let i = 0;
    const int = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let v = block[i++]! & max;
      if (v < max) return v;
      let m = 0;
      let b: number;
      do {
        if (i >= block.length) throw new Error("hpack: truncated integer");
        b = block[i++]!;
        v += (b & 0x7f) * 2 ** m;
        m += 7;
      } while (b & 0x80);
      return v;
    };
    const str = (): string => {
      const huff = (block[i]! & 0x80) !== 0;
      const len = int(7);
      if (i + len > block.length) throw new Error("hpack: truncated string");
      const bytes = block.subarray(i, i + len);
      i += len;
      return huff ? huffmanDecode(bytes) : Buffer.from(bytes).toString("latin1");
    };
    const entry = (index: number): readonly [string, string] => {
      if (index <= 0) throw new Error("hpack: index 0");
      if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
      const e = this.dynamic[index - STATIC_TABLE.length - 1];
      if (e === undefined) throw new Error(`hpack: index ${index} beyond the table`);
      return e;
    };
    while (i < block.length) {
      const b = block[i]!;
      if (b & 0x80) {
        const [n, v] = entry(int(7));
        out.push([n, v]);
      } else if (b & 0x40) {
        const idx = int(6);
        const name = idx === 0 ? str() : entry(idx)[0];
        const value = str();
        out.push([name, value]);
        this.add(name, value);
      } else if (b & 0x20) {
        this.maxSize = int(5);
        this.evict();
      } else {
        const idx = int(4); // without indexing (0x00) or never indexed (0x10)
        const name = idx === 0 ? str() : entry(idx)[0];
        out.push([name, str()]);
      }
    }
    return out;
  }

  private add(name: string, value: string): void {
    this.dynamic.unshift([name, value]);
    this.size += name.length + value.length + 32;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize && this.dynamic.length > 0) {
      const [n, v] = this.dynamic.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

export interface StreamState {
  id: number;
  /** Response fields of the first field block (with :status), in order. */
  headers: [string, string][] | null;
  status: number;
  trailers: [string, string][] | null;
  data: Buffer[];
  dataBytes: number;
  ended: boolean;
  /** RST_STREAM error code received, or null. */
  reset: number | null;
}

export interface GoAway {
  lastStream: number;
  code: number;
  debug: string;
}

export interface H2Options {
  port: number;
  host?: string;
  /** TLS with ALPN "h2" (certificate not verified); false = h2c prior knowledge. */
  tls: boolean;
  servername?: string;
  /** SETTINGS sent after the preface. */
  settings?: readonly (readonly [number, number])[];
  /** Return DATA bytes as WINDOW_UPDATEs on arrival (default true). */
  autoWindow?: boolean;
}

export class H2Connection {
  readonly frames: Frame[] = [];
  readonly streams = new Map<number, StreamState>();
  goaway: GoAway | null = null;
  closed = false;
  /** Bytes written by the test (frames it queued). */
  bytesWritten = 0;
  /** Server's SETTINGS (last seen). */
  serverSettings = new Map<number, number>();
  /** Flow-control credit the server granted for DATA we send: connection (0) and per stream. */
  private sendConn = 65535;
  private sendStream = new Map<number, number>();
  /** The server's first SETTINGS frame arrived (and was acknowledged). */
  settingsSeen = false;
  private reader = new FrameReader();
  private decoder = new HpackDecoder();
  private pendingBlock: { stream: number; parts: Buffer[]; endStream: boolean } | null = null;
  private waiters: (() => void)[] = [];
  private nextId = 1;
  private readonly autoWindow: boolean;

  private constructor(
    readonly socket: Socket,
    o: H2Options,
  ) {
    this.autoWindow = o.autoWindow ?? true;
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {});
  }

  /**
   * Connect, send the preface and SETTINGS, and wait for the server's SETTINGS (already
   * acknowledged when this resolves): the test's frames then never interleave with the
   * automatic SETTINGS ACK, which matters inside a HEADERS + CONTINUATION sequence (RFC 9113
   * §6.10: any other frame there is a connection error).
   */
  static async open(o: H2Options): Promise<H2Connection> {
    const c = await H2Connection.connect(o);
    await c.until(() => c.settingsSeen || c.closed, 5000, "the server's SETTINGS");
    if (c.closed) throw new Error("connection closed before the server's SETTINGS");
    return c;
  }

  private static connect(o: H2Options): Promise<H2Connection> {
    const host = o.host ?? "127.0.0.1";
    return new Promise((resolve, reject) => {
      const sock: Socket = o.tls
        ? tlsConnect({ host, port: o.port, ALPNProtocols: ["h2"], rejectUnauthorized: false, servername: o.servername })
        : netConnect({ host, port: o.port });
      const ready = () => {
        if (o.tls) {
          const alpn = (sock as unknown as { alpnProtocol?: string | false }).alpnProtocol;
          if (alpn !== "h2") {
            sock.destroy();
            return reject(new Error(`ALPN did not select h2 (got ${String(alpn)})`));
          }
        }
        const c = new H2Connection(sock, o);
        c.write(Buffer.concat([PREFACE, settingsFrame(o.settings ?? [])]));
        resolve(c);
      };
      sock.once(o.tls ? "secureConnect" : "connect", ready);
      sock.once("error", reject);
    });
  }

  /** A new client stream id (odd, increasing). */
  newStreamId(): number {
    const id = this.nextId;
    this.nextId += 2;
    return id;
  }

  stream(id: number): StreamState {
    let s = this.streams.get(id);
    if (s === undefined) {
      s = { id, headers: null, status: 0, trailers: null, data: [], dataBytes: 0, ended: false, reset: null };
      this.streams.set(id, s);
    }
    return s;
  }

  /** Write raw bytes; false when the socket is gone. Returns whether the kernel buffer took it. */
  write(b: Uint8Array): boolean {
    if (this.closed || this.socket.destroyed) return false;
    this.bytesWritten += b.length;
    return this.socket.write(b);
  }

  /** Resolves when the socket's write buffer has drained (or the socket closed). */
  drain(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((r) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        r();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  private sendWindowOf(stream: number): number {
    return this.sendStream.get(stream) ?? this.serverSettings.get(SETTING_INITIAL_WINDOW) ?? 65535;
  }

  /** How many DATA bytes the server's flow-control windows allow on `stream` now. */
  sendWindow(stream: number): number {
    return Math.min(this.sendConn, this.sendWindowOf(stream));
  }

  /** Send one DATA frame with as much of `data` as the windows and MAX_FRAME_SIZE allow; returns its length. */
  sendData(stream: number, data: Uint8Array, endStream = false): number {
    const n = Math.min(data.length, this.sendWindow(stream), this.serverSettings.get(SETTING.MAX_FRAME_SIZE) ?? 16384);
    if (n <= 0 && !(endStream && data.length === 0)) return 0;
    this.sendConn -= n;
    this.sendStream.set(stream, this.sendWindowOf(stream) - n);
    this.write(dataFrame(stream, data.subarray(0, n), endStream && n === data.length));
    return n;
  }

  /** Send a request: one HEADERS frame with `fields` (as given), optionally a body. */
  request(fields: readonly (readonly [string, string])[], body?: Uint8Array): number {
    const id = this.newStreamId();
    this.stream(id);
    this.write(headersFrame(id, encodeFields(fields), { endStream: body === undefined }));
    if (body !== undefined) this.write(dataFrame(id, body, true));
    return id;
  }

  /** Wait until `cond()` holds; rejects after `ms` with `what`. */
  async until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = performance.now() + ms;
    while (!cond()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timeout waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Wait for a stream to end (END_STREAM or RST_STREAM), the connection to close, or GOAWAY. */
  async response(id: number, ms = 5000): Promise<StreamState> {
    const s = this.stream(id);
    await this.until(() => s.ended || s.reset !== null || this.closed || (this.goaway !== null && this.goaway.lastStream < id), ms, `stream ${id}`);
    return s;
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private onData(d: Buffer): void {
    for (const f of this.reader.push(d)) this.onFrame(f);
    this.wake();
  }

  private onFrame(f: Frame): void {
    this.frames.push(f);
    switch (f.type) {
      case FRAME.SETTINGS:
        if (!(f.flags & FLAG.ACK)) {
          for (let i = 0; i + 6 <= f.payload.length; i += 6) {
            const id = f.payload.readUInt16BE(i);
            const v = f.payload.readUInt32BE(i + 2);
            if (id === SETTING_INITIAL_WINDOW) {
              const delta = v - (this.serverSettings.get(id) ?? 65535);
              for (const [k, w] of this.sendStream) this.sendStream.set(k, w + delta);
            }
            this.serverSettings.set(id, v);
          }
          this.write(settingsFrame([], true));
          this.settingsSeen = true;
        }
        break;
      case FRAME.PING:
        if (!(f.flags & FLAG.ACK)) this.write(pingFrame(f.payload, true));
        break;
      case FRAME.GOAWAY:
        this.goaway = { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString("latin1") };
        break;
      case FRAME.WINDOW_UPDATE: {
        const inc = f.payload.readUInt32BE(0) & 0x7fffffff;
        if (f.stream === 0) this.sendConn += inc;
        else this.sendStream.set(f.stream, this.sendWindowOf(f.stream) + inc);
        break;
      }
      case FRAME.RST_STREAM:
        this.stream(f.stream).reset = f.payload.readUInt32BE(0);
        break;
      case FRAME.HEADERS: {
        let p = f.payload;
        if (f.flags & FLAG.PADDED) p = p.subarray(1, p.length - p[0]!);
        if (f.flags & FLAG.PRIORITY) p = p.subarray(5);
        this.pendingBlock = { stream: f.stream, parts: [p], endStream: (f.flags & FLAG.END_STREAM) !== 0 };
        if (f.flags & FLAG.END_HEADERS) this.finishBlock();
        break;
      }
      case FRAME.CONTINUATION:
        if (this.pendingBlock !== null) {
          this.pendingBlock.parts.push(f.payload);
          if (f.flags & FLAG.END_HEADERS) this.finishBlock();
        }
        break;
      case FRAME.DATA: {
        const s = this.stream(f.stream);
        let p = f.payload;
        if (f.flags & FLAG.PADDED) p = p.subarray(1, p.length - p[0]!);
        s.data.push(Buffer.from(p));
        s.dataBytes += p.length;
        if (f.flags & FLAG.END_STREAM) s.ended = true;
        if (this.autoWindow && f.payload.length > 0) {
          this.write(windowUpdateFrame(0, f.payload.length));
          if (!s.ended) this.write(windowUpdateFrame(f.stream, f.payload.length));
        }
        break;
      }
    }
  }

  private finishBlock(): void {
    const b = this.pendingBlock!;
    this.pendingBlock = null;
    const fields = this.decoder.decode(Buffer.concat(b.parts));
    const s = this.stream(b.stream);
    if (s.headers === null) {
      s.headers = fields;
      s.status = Number(fields.find(([n]) => n === ":status")?.[1] ?? 0);
    } else s.trailers = fields;
    if (b.endStream) s.ended = true;
  }
}

/** The value of a response field (first match). */
export function field(fields: readonly (readonly [string, string])[] | null, name: string): string | undefined {
  return fields?.find(([n]) => n === name)?.[1];
}
