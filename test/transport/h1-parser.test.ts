// The HTTP/1.1 response parser of the upstream transport: fixed cases for every rule, and
// fast-check properties: valid responses split anywhere parse exactly like the unsplit bytes and
// like the model that produced them; garbage and mutated responses never throw and never loop.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  FRAMING_CHUNKED,
  FRAMING_CLOSE,
  FRAMING_LENGTH,
  FRAMING_NONE,
  ResponseParser,
  STEP_BODY,
  STEP_DONE,
  STEP_ERROR,
  STEP_HEAD,
  STEP_MORE,
} from "../../src/upstream/h1/parser.ts";

interface Parsed {
  ok: boolean;
  error: string;
  status: number;
  statusText: string;
  headers: readonly string[];
  framing: number;
  keepAlive: boolean;
  upgraded: boolean;
  body: Buffer;
  /** Bytes left after the end of the response (in the last buffer). */
  rest: number;
  /** The response ended by the parser itself (false: needed EOF, or incomplete). */
  complete: boolean;
}

/** Feed `chunks` to a parser; at the end, EOF (`finish()`) when `eof`. */
function parse(chunks: Uint8Array[], opts: { noBody?: boolean; upgrade?: boolean; eof?: boolean; maxHeaderBytes?: number; parser?: ResponseParser } = {}): Parsed {
  const p = opts.parser ?? new ResponseParser({ maxHeaderBytes: opts.maxHeaderBytes });
  p.reset(opts.noBody ?? false, opts.upgrade ?? false);
  const out: Parsed = { ok: false, error: "", status: 0, statusText: "", headers: [], framing: -1, keepAlive: false, upgraded: false, body: Buffer.alloc(0), rest: 0, complete: false };
  const parts: Buffer[] = [];
  let total = 0;
  for (const c of chunks) total += c.length;
  let calls = 0;
  const record = () => {
    out.status = p.status;
    out.statusText = p.statusText;
    out.headers = p.headers;
    out.framing = p.framing;
    out.keepAlive = p.keepAlive;
    out.upgraded = p.upgraded;
  };
  const end = () => {
    out.body = Buffer.concat(parts);
    return out;
  };
  for (const chunk of chunks) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    for (;;) {
      // every call consumes bytes or changes state: a bound on calls proves there is no loop
      if (++calls > 4 * total + 4 * chunks.length + 16) throw new Error("parser does not progress");
      const r = p.execute(b, pos);
      expect(p.pos).toBeGreaterThanOrEqual(pos);
      expect(p.pos).toBeLessThanOrEqual(b.length);
      pos = p.pos;
      if (r === STEP_MORE) {
        expect(pos).toBe(b.length);
        break;
      }
      if (r === STEP_HEAD) {
        record();
        if (p.upgraded) {
          out.ok = true;
          out.complete = true;
          out.rest = b.length - pos;
          return end();
        }
        continue;
      }
      if (r === STEP_BODY) {
        expect(p.bodyStart).toBeGreaterThanOrEqual(0);
        expect(p.bodyEnd).toBeGreaterThan(p.bodyStart);
        parts.push(b.subarray(p.bodyStart, p.bodyEnd));
        continue;
      }
      if (r === STEP_DONE) {
        out.ok = true;
        out.complete = true;
        out.rest = b.length - pos;
        return end();
      }
      expect(r).toBe(STEP_ERROR);
      out.error = p.error || "?";
      return end();
    }
  }
  if (opts.eof) {
    const r = p.finish();
    if (r === STEP_DONE) out.ok = true;
    else {
      expect(r).toBe(STEP_ERROR);
      out.error = p.error;
    }
  }
  return end();
}

const b = (s: string) => Buffer.from(s, "latin1");
const one = (s: string, opts: Parameters<typeof parse>[1] = {}) => parse([b(s)], opts);
const bytewise = (s: string, opts: Parameters<typeof parse>[1] = {}) => parse([...b(s)].map((x) => Uint8Array.of(x)), opts);

describe("fixed cases", () => {
  test("Content-Length body, headers in order and case, OWS trimmed", () => {
    const r = one("HTTP/1.1 200 OK\r\nContent-Type:  text/plain \t\r\nX-A:b\r\nContent-Length: 5\r\nX-Empty:\r\n\r\nhello");
    expect(r.ok && r.complete).toBe(true);
    expect(r.status).toBe(200);
    expect(r.statusText).toBe("OK");
    expect(r.headers).toEqual(["Content-Type", "text/plain", "X-A", "b", "Content-Length", "5", "X-Empty", ""]);
    expect(r.framing).toBe(FRAMING_LENGTH);
    expect(r.keepAlive).toBe(true);
    expect(r.body.toString()).toBe("hello");
    expect(r.rest).toBe(0);
  });

  test("status line variants", () => {
    expect(one("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n").statusText).toBe("");
    expect(one("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n").ok).toBe(true);
    expect(one("HTTP/1.1 599 Whatever it is: é\r\nContent-Length: 0\r\n\r\n").statusText).toBe("Whatever it is: é");
    for (const bad of ["HTTP/1.1 99 X\r\n\r\n", "HTTP/1.1 600 X\r\n\r\n", "HTTP/1.1 2000 X\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n", "HTTP/1.2 200 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n"])
      expect(one(bad).ok).toBe(false);
  });

  test("chunked with extensions and trailers (discarded), byte by byte", () => {
    const s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;q=\"a b\"\r\nhello\r\nA \t; x\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n";
    for (const r of [one(s), bytewise(s)]) {
      expect(r.ok && r.complete).toBe(true);
      expect(r.framing).toBe(FRAMING_CHUNKED);
      expect(r.body.toString()).toBe("hello0123456789");
      expect(r.headers).toEqual(["Transfer-Encoding", "chunked"]);
    }
  });

  test("Transfer-Encoding is case-insensitive and may be split over lines only as exactly `chunked`", () => {
    expect(one("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n").ok).toBe(true);
    expect(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").ok).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").ok).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n").ok).toBe(false);
  });

  test("close-delimited body ends at EOF and forbids reuse", () => {
    const r = parse([b("HTTP/1.1 200 OK\r\nX: y\r\n\r\nabc"), b("def")], { eof: true });
    expect(r.ok).toBe(true);
    expect(r.complete).toBe(false);
    expect(r.framing).toBe(FRAMING_CLOSE);
    expect(r.keepAlive).toBe(false);
    expect(r.body.toString()).toBe("abcdef");
  });

  test("no body: HEAD, 204, 304 (framing headers ignored, bytes after are left over)", () => {
    const head = one("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n", { noBody: true });
    expect(head.ok && head.complete).toBe(true);
    expect(head.framing).toBe(FRAMING_NONE);
    expect(head.body.length).toBe(0);
    expect(one("HTTP/1.1 204 No Content\r\n\r\n").complete).toBe(true);
    const n304 = one("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nXYZ");
    expect(n304.complete).toBe(true);
    expect(n304.rest).toBe(3);
    expect(one("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").complete).toBe(true);
  });

  test("interim 1xx responses are skipped; 101 only when an upgrade was asked for", () => {
    const s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    for (const r of [one(s), bytewise(s)]) {
      expect(r.status).toBe(201);
      expect(r.headers).toEqual(["Content-Length", "2"]);
      expect(r.body.toString()).toBe("ok");
    }
    const up = one("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", { upgrade: true });
    expect(up.ok && up.upgraded).toBe(true);
    expect(up.status).toBe(101);
    expect(up.rest).toBe(7);
    expect(one("HTTP/1.1 101 Switching Protocols\r\n\r\n").ok).toBe(false);
  });

  test("keep-alive rules: HTTP/1.0 closes unless keep-alive; Connection: close closes", () => {
    expect(one("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(false);
    expect(one("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(true);
    expect(one("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nConnection: x-foo, Close\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keepAlive).toBe(true);
  });

  test("Keep-Alive timeout hint", () => {
    const ka = (v: string) => {
      const p = new ResponseParser();
      p.reset(false, false);
      expect(p.execute(b(`HTTP/1.1 200 OK\r\nKeep-Alive: ${v}\r\nContent-Length: 0\r\n\r\n`), 0)).toBe(STEP_HEAD);
      return p.keepAliveTimeoutMs;
    };
    expect(ka("timeout=5")).toBe(5000);
    expect(ka("timeout=5, max=1000")).toBe(5000);
    expect(ka("max=10, Timeout=30")).toBe(30000);
    expect(ka("max=10")).toBe(-1);
    expect(ka("xtimeout=5")).toBe(-1);
    expect(ka("timeout=")).toBe(-1);
    expect(one("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").ok).toBe(true);
  });

  test("smuggling and framing errors", () => {
    const bad: [string, string][] = [
      ["duplicate CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"],
      ["CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"],
      ["signed CL", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"],
      ["hex CL", "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello"],
      ["huge CL", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"],
      ["CL + TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["TE + CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"],
      ["space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"],
      ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n"],
      ["NUL in value", "HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n"],
      ["control in value", "HTTP/1.1 200 OK\r\nX-A: b\x1bc\r\nContent-Length: 0\r\n\r\n"],
      ["DEL in value", "HTTP/1.1 200 OK\r\nX-A: b\x7fc\r\nContent-Length: 0\r\n\r\n"],
      ["bare CR in value", "HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n"],
      ["bare LF line end", "HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 0\r\n\r\n"],
      ["bare LF head", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"],
      ["invalid name", "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 0\r\n\r\n"],
      ["empty name", "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 0\r\n\r\n"],
      ["no colon", "HTTP/1.1 200 OK\r\nXA\r\nContent-Length: 0\r\n\r\n"],
      ["garbage", "garbage\r\n\r\n"],
      ["bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
      ["negative chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"],
      ["empty chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"],
      ["chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"],
      ["two chunk sizes", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n"],
      ["chunk size bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"],
      ["chunk ext with LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n"],
      ["chunk data too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"],
      ["chunk data missing CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n"],
      ["trailer obs-fold", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n"],
      ["trailer NUL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: \x00\r\n\r\n"],
      ["final bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n"],
    ];
    for (const [what, s] of bad) {
      for (const r of [one(s, { eof: true }), bytewise(s, { eof: true })]) {
        if (r.ok) throw new Error(`accepted: ${what}`);
      }
    }
  });

  test("head size limit (exactly at the limit passes, one byte more fails, across buffers too)", () => {
    const base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: ";
    const pad = (total: number) => base + "a".repeat(total - base.length - 4) + "\r\n\r\n";
    const max = 1024;
    expect(b(pad(max)).length).toBe(max);
    expect(one(pad(max), { maxHeaderBytes: max }).ok).toBe(true);
    expect(bytewise(pad(max), { maxHeaderBytes: max }).ok).toBe(true);
    expect(one(pad(max + 1), { maxHeaderBytes: max }).ok).toBe(false);
    expect(bytewise(pad(max + 1), { maxHeaderBytes: max }).ok).toBe(false);
    // an endless head is cut at the limit, without waiting for its end
    const endless = parse([b("HTTP/1.1 200 OK\r\n"), ...Array.from({ length: 100 }, () => b("X-A: " + "b".repeat(1000) + "\r\n"))]);
    expect(endless.error).toBe("response head too large");
    // trailers count against the same limit
    const tr = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + "t".repeat(2000) + "\r\n\r\n";
    expect(one(tr, { maxHeaderBytes: max }).ok).toBe(false);
    expect(one(tr).ok).toBe(true);
  });

  test("truncation is an error at EOF, never a complete body", () => {
    expect(one("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", { eof: true }).ok).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", { eof: true }).ok).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", { eof: true }).ok).toBe(false);
    expect(one("HTTP/1.1 200 OK\r\nContent-Le", { eof: true }).error).toBe("connection closed before the response head");
    expect(parse([], { eof: true }).ok).toBe(false);
  });

  test("garbage is rejected before the head is complete", () => {
    expect(parse([b("<html>")]).ok).toBe(false);
    expect(parse([b("HTTP/1.1 200 OK\r\nA: b\nB")]).error).toBe("bare LF in response head");
    expect(parse([b("HTT"), b("X")]).error).toBe("not an HTTP/1.x response");
  });

  test("the parser is reusable across responses on one connection", () => {
    const p = new ResponseParser();
    for (let i = 0; i < 3; i++) {
      p.reset(false, false);
      const buf = b(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${i}`);
      expect(p.execute(buf, 0)).toBe(STEP_HEAD);
      expect(p.execute(buf, p.pos)).toBe(STEP_BODY);
      expect(buf.toString("latin1", p.bodyStart, p.bodyEnd)).toBe(String(i));
      expect(p.execute(buf, p.pos)).toBe(STEP_DONE);
      expect(p.done).toBe(true);
    }
  });

  test("a head equal to the connection's last one parses to the same outputs (remembered), whatever the request", () => {
    const p = new ResponseParser();
    const head = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 3\r\n\r\n";
    const get = () => parse([b(head + "abc")], { parser: p });
    const first = get();
    const fields = p.headers;
    expect(first).toMatchObject({ ok: true, status: 200, statusText: "OK", headers: ["Server", "x", "Content-Length", "3"], keepAlive: true, complete: true });
    expect(first.body.toString()).toBe("abc");
    expect(get()).toEqual(first);
    expect(p.headers).toBe(fields); // the same array: nothing was parsed again
    // HEAD: the same head, no body
    const head1 = parse([b(head)], { parser: p, noBody: true });
    expect(head1).toMatchObject({ ok: true, status: 200, framing: FRAMING_NONE, keepAlive: true, complete: true, rest: 0 });
    expect(get()).toEqual(first);
    // one byte different: parsed anew
    const other = parse([b(head.replace("x", "y") + "abc")], { parser: p });
    expect(other.headers).toEqual(["Server", "y", "Content-Length", "3"]);
    expect(p.headers).not.toBe(fields);
    // close-delimited (not reusable), then the same head to a HEAD request (reusable)
    const close = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
    expect(parse([b(close + "zz")], { parser: p, eof: true })).toMatchObject({ ok: true, keepAlive: false, framing: FRAMING_CLOSE });
    expect(parse([b(close)], { parser: p, noBody: true })).toMatchObject({ ok: true, keepAlive: true, framing: FRAMING_NONE });
    expect(parse([b(close + "zz")], { parser: p, eof: true })).toMatchObject({ ok: true, keepAlive: false, framing: FRAMING_CLOSE });
    // a remembered head that an upgrade request gets is still not a 101
    expect(parse([b(head + "abc")], { parser: p, upgrade: true })).toMatchObject({ ok: true, status: 200, upgraded: false });
  });
});

// ---------------------------------------------------------------------------------------
// Property tests

const TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split("");
const VALUE_CHARS = [...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), "\t", "\x80", "\xe9", "\xff"];
const RESERVED = new Set(["content-length", "transfer-encoding", "connection"]);

const fieldName = fc.string({ unit: fc.constantFrom(...TOKEN), minLength: 1, maxLength: 16 }).filter((n) => !RESERVED.has(n.toLowerCase()));
const fieldValue = fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 30 });
const ows = fc.constantFrom("", " ", "  ", "\t", " \t ");
const field = fc.record({ name: fieldName, value: fieldValue, pre: ows, post: ows });
const reason = fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 20 });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });

type Model = {
  minor: 0 | 1;
  interim: { status: number; fields: { name: string; value: string; pre: string; post: string }[] }[];
  status: number;
  reason: string;
  fields: { name: string; value: string; pre: string; post: string }[];
  conn: "" | "close" | "keep-alive";
  head: boolean;
  framing:
    | { kind: "length"; body: Uint8Array }
    | { kind: "chunked"; chunks: { data: Uint8Array; ext: string }[]; trailers: { name: string; value: string }[]; lastExt: string }
    | { kind: "close"; body: Uint8Array }
    | { kind: "none" };
};

const framingArb = fc.oneof(
  fc.record({ kind: fc.constant("length" as const), body: bytes(3000) }),
  fc.record({
    kind: fc.constant("chunked" as const),
    chunks: fc.array(fc.record({ data: fc.uint8Array({ minLength: 1, maxLength: 700 }), ext: fc.constantFrom("", ";a", ";a=b", ' ; q="x y"', ";" + "e".repeat(300)) }), { maxLength: 6 }),
    trailers: fc.array(fc.record({ name: fieldName, value: fieldValue }), { maxLength: 3 }),
    lastExt: fc.constantFrom("", ";end"),
  }),
  fc.record({ kind: fc.constant("close" as const), body: bytes(3000) }),
  fc.record({ kind: fc.constant("none" as const) }),
);

const modelArb: fc.Arbitrary<Model> = fc
  .record({
    minor: fc.constantFrom(0 as const, 1 as const),
    interim: fc.array(fc.record({ status: fc.constantFrom(100, 102, 103), fields: fc.array(field, { maxLength: 2 }) }), { maxLength: 2 }),
    status: fc.integer({ min: 200, max: 599 }),
    reason,
    fields: fc.array(field, { maxLength: 8 }),
    conn: fc.constantFrom("" as const, "close" as const, "keep-alive" as const),
    head: fc.boolean(),
    framing: framingArb,
  })
  .map((m) => {
    // "none" means a response that has no body by its status or method
    if (m.framing.kind === "none" && !m.head && m.status !== 204 && m.status !== 304) return { ...m, status: 204 };
    if (m.framing.kind !== "none" && (m.status === 204 || m.status === 304)) return { ...m, status: 200 };
    return m;
  });

function serialize(m: Model): { bytes: Buffer; fields: string[]; body: Buffer; needsEof: boolean; keepAlive: boolean } {
  const parts: Buffer[] = [];
  const line = (s: string) => parts.push(Buffer.from(s + "\r\n", "latin1"));
  for (const i of m.interim) {
    line(`HTTP/1.1 ${i.status} Interim`);
    for (const f of i.fields) line(`${f.name}:${f.pre}${f.value}${f.post}`);
    line("");
  }
  line(`HTTP/1.${m.minor} ${m.status} ${m.reason}`);
  const fields: string[] = [];
  const add = (name: string, value: string, pre = " ", post = "") => {
    line(`${name}:${pre}${value}${post}`);
    fields.push(name, value);
  };
  for (const f of m.fields) {
    line(`${f.name}:${f.pre}${f.value}${f.post}`);
    fields.push(f.name, f.value.replace(/^[ \t]+|[ \t]+$/g, ""));
  }
  if (m.conn !== "") add("Connection", m.conn);
  let body = Buffer.alloc(0);
  let payload: Buffer[] = [];
  let needsEof = false;
  const f = m.framing;
  const noBody = m.head || m.status === 204 || m.status === 304;
  switch (f.kind) {
    case "length":
      add("Content-Length", String(f.body.length));
      if (!noBody) {
        body = Buffer.from(f.body);
        payload = [body];
      }
      break;
    case "chunked":
      add("Transfer-Encoding", "chunked");
      if (!noBody) {
        body = Buffer.concat(f.chunks.map((c) => c.data));
        for (const c of f.chunks) payload.push(Buffer.from(`${c.data.length.toString(16)}${c.ext}\r\n`, "latin1"), Buffer.from(c.data), Buffer.from("\r\n"));
        payload.push(Buffer.from(`0${f.lastExt}\r\n`));
        for (const t of f.trailers) payload.push(Buffer.from(`${t.name}: ${t.value}\r\n`, "latin1"));
        payload.push(Buffer.from("\r\n"));
      }
      break;
    case "close":
      if (!noBody) {
        body = Buffer.from(f.body);
        payload = [body];
        needsEof = true;
      }
      break;
  }
  line("");
  const keepAlive = !needsEof && m.conn !== "close" && (m.minor === 1 || m.conn === "keep-alive");
  return { bytes: Buffer.concat([...parts, ...payload]), fields, body, needsEof, keepAlive };
}

/** Cut `buf` at the given points (taken modulo its length). */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % buf.length)))].filter((c) => c > 0).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

describe("properties", () => {
  test("valid responses: any split parses like the whole and like the model (12,000 runs)", () => {
    fc.assert(
      fc.property(modelArb, fc.array(fc.nat(), { maxLength: 12 }), (m, cuts) => {
        const s = serialize(m);
        const opts = { noBody: m.head, eof: s.needsEof };
        const whole = parse([s.bytes], opts);
        const pieces = parse(split(s.bytes, cuts), opts);
        const bytewiseRare = cuts.length === 12 ? parse([...s.bytes].map((x) => Uint8Array.of(x)), opts) : whole;
        for (const r of [whole, pieces, bytewiseRare]) {
          if (!r.ok) throw new Error(`rejected a valid response: ${r.error}\n${s.bytes.toString("latin1").slice(0, 400)}`);
          expect(r.status).toBe(m.status);
          expect(r.statusText).toBe(m.reason);
          expect(r.headers).toEqual(s.fields);
          expect(r.body.equals(s.body)).toBe(true);
          expect(r.keepAlive).toBe(s.keepAlive);
          expect(r.complete).toBe(!s.needsEof);
          expect(r.rest).toBe(0);
        }
      }),
      { numRuns: 12_000 },
    );
  });

  test("one parser reused for responses whose heads repeat parses each like a fresh parser (3,000 runs)", () => {
    fc.assert(
      fc.property(fc.array(modelArb, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { minLength: 2, maxLength: 10 }), (models, picks) => {
        const p = new ResponseParser();
        for (const k of picks) {
          const m = models[k % models.length]!;
          const s = serialize(m);
          const opts = { noBody: m.head, eof: s.needsEof };
          const fresh = parse([s.bytes], opts);
          const reused = parse([s.bytes], { ...opts, parser: p });
          expect(reused).toEqual(fresh);
          expect(p.keepAliveTimeoutMs).toBe(-1);
          expect(p.contentLength).toBe(m.framing.kind === "length" ? m.framing.body.length : -1);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  test("garbage: never throws, never loops, split-invariant outcome (10,000 runs)", () => {
    const garbage = fc.oneof(
      bytes(600),
      bytes(600).map((x) => Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\n"), x])),
      fc.array(fc.constantFrom("HTTP/1.1 ", "200", " OK", "\r\n", "\r", "\n", ":", " ", "\t", "\0", "Content-Length: ", "Transfer-Encoding: chunked", "5", "a", "\r\n\r\n", "0\r\n\r\n", "\xff"), { maxLength: 40 }).map((a) => Buffer.from(a.join(""), "latin1")),
    );
    fc.assert(
      fc.property(garbage, fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (g, cuts, head) => {
        const buf = Buffer.from(g);
        const whole = parse([buf], { eof: true, noBody: head, maxHeaderBytes: 256 });
        const pieces = parse(split(buf, cuts), { eof: true, noBody: head, maxHeaderBytes: 256 });
        expect(pieces.ok).toBe(whole.ok);
        if (whole.ok) {
          expect(pieces.status).toBe(whole.status);
          expect(pieces.headers).toEqual(whole.headers);
          expect(pieces.body.equals(whole.body)).toBe(true);
        }
      }),
      { numRuns: 10_000 },
    );
  });

  test("mutated valid responses: never throw, never loop, split-invariant outcome (8,000 runs)", () => {
    const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom("set", "insert", "delete"), byte: fc.constantFrom(0, 9, 10, 13, 32, 58, 59, 48, 65, 127, 255) });
    fc.assert(
      fc.property(modelArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 8 }), (m, muts, cuts) => {
        const s = serialize(m);
        let buf = Buffer.from(s.bytes);
        for (const mu of muts) {
          if (buf.length === 0) break;
          const i = mu.at % buf.length;
          if (mu.kind === "set") buf[i] = mu.byte;
          else if (mu.kind === "insert") buf = Buffer.concat([buf.subarray(0, i), Buffer.of(mu.byte), buf.subarray(i)]);
          else buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1)]);
        }
        const whole = parse([buf], { eof: true, noBody: m.head });
        const pieces = parse(split(buf, cuts), { eof: true, noBody: m.head });
        expect(pieces.ok).toBe(whole.ok);
        if (whole.ok) {
          expect(pieces.status).toBe(whole.status);
          expect(pieces.body.equals(whole.body)).toBe(true);
        }
      }),
      { numRuns: 8_000 },
    );
  });
});
