// The hostile-input corpus (SPEC §6, §3.1 stage 1): raw HTTP/1.x requests, each with the
// RFC clause it exercises and what Hecate must do with it. corpus.test.ts sends every case as
// raw bytes to an in-process Hecate whose upstream records the raw bytes it receives, and
// checks, besides the case's own expectation, that
//   - the upstream's strict parser (wire.ts) never saw a request that could be read two ways
//     (one request head per request, one Host, exactly one framing: Content-Length matching
//     the body, or chunked, never both; no bare CR/LF, NUL, obs-fold; no underscore alias of a
//     framing field);
//   - the client got only complete, well-formed responses: never a half answer, never garbage,
//     never a stack trace; Hecate's own errors are short text/plain with X-Request-Id.
//
// Expectations:
//   reject(s)   the client gets one response with a status in `s`; the upstream receives
//               nothing at all (`partialOk`: a streamed body that turned out invalid may leave
//               a head and part of a body at the upstream, cut off by a close — never a
//               complete request; `silentOk`: a close without an answer is fine too);
//   silent()    Bun closes the connection without a byte (unknown or lower-case methods):
//               nothing reaches the upstream and nothing half-written reaches the client;
//   forward(u)  the client gets the upstream's 200; the upstream receives exactly one request
//               matching `u` (method, target, body, framing);
//   either(s,u) a rejection with a status in `s` (nothing upstream) or a forward matching `u`:
//               both are unambiguous, the RFC allows both;
//   pipeline(n) RFC 9112 §9.3.2: n requests in one write. Bun 1.4.5 closes the connection when
//               a pipelined request arrives while an async handler runs (BUN-NOTES), so the
//               client gets a prefix of the n answers (often none) and the upstream a prefix of
//               the n requests, each complete and well-framed, in order.
import type { WireRequest } from "./wire.ts";

export type Expect =
  | { kind: "reject"; status: number[]; partialOk?: boolean; silentOk?: boolean }
  | { kind: "silent" }
  | { kind: "forward"; up: UpMatch; responses?: number[] }
  | { kind: "either"; status: number[]; up: UpMatch; partialOk?: boolean }
  | { kind: "pipeline"; targets: string[] };

export interface UpMatch {
  method?: string;
  target?: string;
  body?: string;
  framing?: WireRequest["framing"];
  /** Extra assertion on the one forwarded request; return a message when it fails. */
  check?: (r: WireRequest) => string | undefined;
}

export interface HostileCase {
  name: string;
  /** The clause that says what must happen: "RFC 9112 §6.3" / "RFC 9110 §8.6" (+ SPEC point). */
  rfc: string;
  /** Bytes to send (latin1); an array is written piece by piece `gapMs` apart. */
  send: string | string[];
  gapMs?: number;
  expect: Expect;
  /** Why the expectation is what it is, when it is not obvious (limitations live here). */
  note?: string;
}

const reject = (status: number | number[], partialOk = false, silentOk = false): Expect => ({ kind: "reject", status: Array.isArray(status) ? status : [status], partialOk, silentOk });
const silent = (): Expect => ({ kind: "silent" });
const forward = (up: UpMatch, responses?: number[]): Expect => ({ kind: "forward", up, responses });
const either = (status: number[], up: UpMatch): Expect => ({ kind: "either", status, up });
const pipeline = (...targets: string[]): Expect => ({ kind: "pipeline", targets });

/** Field lines, then the blank line, then the body. The request line is the first entry. */
const msg = (lines: string[], body = ""): string => lines.map((l) => l + "\r\n").join("") + "\r\n" + body;
const C = "Connection: close";
const H = "Host: h";
const get = (target = "/a", ...fields: string[]) => msg([`GET ${target} HTTP/1.1`, H, ...fields, C]);
const post = (fields: string[], body: string) => msg(["POST /a HTTP/1.1", H, ...fields, C], body);
const chunkedPost = (body: string) => post(["Transfer-Encoding: chunked"], body);
const HELLO = "5\r\nhello\r\n0\r\n\r\n";
const fwdHello = (framing: WireRequest["framing"] = "chunked"): UpMatch => ({ method: "POST", target: "/a", body: "hello", framing });
const noField = (name: string) => (r: WireRequest) => (r.fields.some(([n]) => n.toLowerCase() === name) ? `upstream got a ${name} field` : undefined);
const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

export const CASES: HostileCase[] = [
  // ---- message framing: Content-Length / Transfer-Encoding (RFC 9112 §6) -------------------
  { name: "CL then TE", rfc: "RFC 9112 §6.3 ¶3, §11.2", send: post(["Content-Length: 5", "Transfer-Encoding: chunked"], HELLO), expect: reject(400) },
  { name: "TE then CL", rfc: "RFC 9112 §6.3 ¶3, §11.2", send: post(["Transfer-Encoding: chunked", "Content-Length: 5"], HELLO), expect: reject(400) },
  {
    name: "CL.TE smuggling probe",
    rfc: "RFC 9112 §11.2",
    send: msg(["POST /a HTTP/1.1", H, `Content-Length: ${5 + SMUGGLED.length}`, "Transfer-Encoding: chunked"], "0\r\n\r\n" + SMUGGLED),
    expect: reject(400),
  },
  {
    name: "TE.CL smuggling probe",
    rfc: "RFC 9112 §11.2",
    send: msg(["POST /a HTTP/1.1", H, "Content-Length: 4", "Transfer-Encoding: chunked"], `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`),
    expect: reject(400),
  },
  { name: "two equal Content-Length fields", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 5", "Content-Length: 5"], "hello"), expect: reject(400), note: "Bun joins them into \"5, 5\"; Hecate rejects (forward.ts), as nginx does" },
  { name: "two different Content-Length fields", rfc: "RFC 9112 §6.3 ¶5", send: post(["Content-Length: 5", "Content-Length: 6"], "hello!"), expect: reject(400) },
  { name: "Content-Length list 5, 5", rfc: "RFC 9112 §6.3 ¶5, RFC 9110 §8.6", send: post(["Content-Length: 5, 5"], "hello"), expect: reject(400) },
  { name: "Content-Length list 5, 6", rfc: "RFC 9112 §6.3 ¶5", send: post(["Content-Length: 5, 6"], "hello!"), expect: reject(400) },
  { name: "Content-Length +5", rfc: "RFC 9110 §8.6", send: post(["Content-Length: +5"], "hello"), expect: reject(400) },
  { name: "Content-Length -1", rfc: "RFC 9110 §8.6", send: post(["Content-Length: -1"], "hello"), expect: reject(400) },
  { name: "Content-Length 0x5", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 0x5"], "hello"), expect: reject(400) },
  { name: "Content-Length 5a", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 5a"], "hello"), expect: reject(400) },
  { name: "Content-Length 5.0", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 5.0"], "hello"), expect: reject(400) },
  { name: "Content-Length empty", rfc: "RFC 9110 §8.6", send: post(["Content-Length: "], "hello"), expect: reject(400) },
  { name: "Content-Length 5 5", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 5 5"], "hello"), expect: reject(400) },
  { name: "Content-Length overflowing 64 bits", rfc: "RFC 9110 §8.6, RFC 9112 §6.3 ¶5", send: post(["Content-Length: 99999999999999999999999"], "hello"), expect: reject([400, 413]) },
  { name: "Content-Length over bodyBytesCap", rfc: "RFC 9110 §15.5.14 (SPEC §3.1 stage 8)", send: post(["Content-Length: 2000000"], "hello"), expect: reject(413) },
  { name: "Content-Length with OWS", rfc: "RFC 9110 §5.5", send: post(["Content-Length:   5  "], "hello"), expect: forward(fwdHello("length")) },
  { name: "Content-Length with leading zeros", rfc: "RFC 9110 §8.6", send: post(["Content-Length: 005"], "hello"), expect: forward(fwdHello("length")) },
  { name: "TE chunked, chunked", rfc: "RFC 9112 §7", send: post(["Transfer-Encoding: chunked, chunked"], HELLO), expect: reject(400) },
  { name: "two TE chunked fields", rfc: "RFC 9112 §7, RFC 9110 §5.3", send: post(["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], HELLO), expect: reject(400) },
  { name: "TE gzip, chunked", rfc: "RFC 9112 §6.1", send: post(["Transfer-Encoding: gzip, chunked"], HELLO), expect: reject([400, 501]) },
  { name: "TE chunked, gzip (chunked not final)", rfc: "RFC 9112 §6.3 ¶4", send: post(["Transfer-Encoding: chunked, gzip"], HELLO), expect: reject(400) },
  { name: "TE gzip alone", rfc: "RFC 9112 §6.3 ¶4", send: post(["Transfer-Encoding: gzip"], "hello"), expect: reject([400, 501]) },
  { name: "TE identity with CL", rfc: "RFC 9112 §6.1, §6.3 ¶3", send: post(["Transfer-Encoding: identity", "Content-Length: 5"], "hello"), expect: reject([400, 501]) },
  { name: "TE xchunked", rfc: "RFC 9112 §6.1", send: post(["Transfer-Encoding: xchunked"], HELLO), expect: reject([400, 501]) },
  { name: "TE chunked;q=1", rfc: "RFC 9112 §7", send: post(["Transfer-Encoding: chunked;q=1"], HELLO), expect: reject([400, 501]) },
  { name: "TE with vertical tab", rfc: "RFC 9110 §5.5", send: post(["Transfer-Encoding:\x0bchunked"], HELLO), expect: reject(400) },
  { name: "TE empty with CL", rfc: "RFC 9112 §6.1", send: post(["Transfer-Encoding: ", "Content-Length: 5"], "hello"), expect: reject(400) },
  { name: "TE chunked with CL 0", rfc: "RFC 9112 §6.3 ¶3", send: post(["Transfer-Encoding: chunked", "Content-Length: 0"], HELLO), expect: reject(400) },
  { name: "TE Chunked (case-insensitive coding)", rfc: "RFC 9112 §7", send: post(["Transfer-Encoding: Chunked"], HELLO), expect: forward(fwdHello()) },
  { name: "TE chunked with OWS", rfc: "RFC 9110 §5.5", send: post(["Transfer-Encoding:  chunked "], HELLO), expect: forward(fwdHello()) },
  { name: "HTTP/1.0 with TE chunked", rfc: "RFC 9112 §6.1", send: msg(["POST /a HTTP/1.0", H, "Transfer-Encoding: chunked"], HELLO), expect: reject(400) },
  {
    name: "Transfer_Encoding alias beside CL",
    rfc: "RFC 9112 §11.2, RFC 9110 §5.1",
    send: post(["Transfer_Encoding: chunked", "Content-Length: 5"], "hello"),
    expect: forward({ ...fwdHello("length"), check: noField("transfer_encoding") }),
    note: "CGI-style upstreams read _ as -; Hecate drops the alias (headers.ts)",
  },
  { name: "Content_Length alias", rfc: "RFC 9112 §11.2, RFC 9110 §5.1", send: post(["Content_Length: 3", "Content-Length: 5"], "hello"), expect: forward({ ...fwdHello("length"), check: noField("content_length") }) },
  { name: "Connection names Content-Length", rfc: "RFC 9110 §7.6.1", send: msg(["POST /a HTTP/1.1", H, "Content-Length: 5", "Connection: close, Content-Length"], "hello"), expect: forward(fwdHello("length")) },
  { name: "Connection names Transfer-Encoding", rfc: "RFC 9110 §7.6.1", send: msg(["POST /a HTTP/1.1", H, "Transfer-Encoding: chunked", "Connection: close, Transfer-Encoding"], HELLO), expect: forward(fwdHello()) },
  { name: "Connection names Host", rfc: "RFC 9110 §7.6.1, §7.2", send: get("/a", "Connection: Host"), expect: forward({ method: "GET", target: "/a", check: (r) => (r.fields.find(([n]) => n.toLowerCase() === "host")?.[1] === "h" ? undefined : "Host lost") }) },

  // ---- chunked coding (RFC 9112 §7.1) ---------------------------------------------------------
  { name: "chunk size zz", rfc: "RFC 9112 §7.1", send: chunkedPost("zz\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size 0x5", rfc: "RFC 9112 §7.1", send: chunkedPost("0x5\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size -5", rfc: "RFC 9112 §7.1", send: chunkedPost("-5\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size over 64 bits", rfc: "RFC 9112 §7.1", send: chunkedPost("fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size wrapping to 5", rfc: "RFC 9112 §7.1", send: chunkedPost("10000000000000005\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size with leading zeros", rfc: "RFC 9112 §7.1", send: chunkedPost("0005\r\nhello\r\n0\r\n\r\n"), expect: forward(fwdHello()) },
  { name: "chunk size with leading space", rfc: "RFC 9112 §7.1", send: chunkedPost(" 5\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk size with trailing space", rfc: "RFC 9112 §7.1", send: chunkedPost("5 \r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "empty chunk-size line", rfc: "RFC 9112 §7.1", send: chunkedPost("\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk lines ended by bare LF", rfc: "RFC 9112 §7.1, §2.2", send: chunkedPost("5\nhello\n0\n\n"), expect: reject(400, true) },
  { name: "chunk lines ended by bare CR", rfc: "RFC 9112 §7.1, §2.2", send: chunkedPost("5\rhello\r0\r\r"), expect: reject(400, true) },
  { name: "chunk data longer than its size", rfc: "RFC 9112 §7.1", send: chunkedPost("3\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk data shorter than its size", rfc: "RFC 9112 §7.1", send: chunkedPost("7\r\nhello\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk data not followed by CRLF", rfc: "RFC 9112 §7.1", send: chunkedPost("5\r\nhelloX\r\n0\r\n\r\n"), expect: reject(400, true) },
  { name: "chunk extension", rfc: "RFC 9112 §7.1.1", send: chunkedPost("5;name=value\r\nhello\r\n0\r\n\r\n"), expect: forward(fwdHello()) },
  { name: "chunk extension of 1 KiB", rfc: "RFC 9112 §7.1.1", send: chunkedPost(`5;a=${"b".repeat(1024)}\r\nhello\r\n0\r\n\r\n`), expect: forward(fwdHello()) },
  { name: "chunk extension quoted-string", rfc: "RFC 9112 §7.1.1", send: chunkedPost('5;a="b c"\r\nhello\r\n0\r\n\r\n'), expect: { kind: "either", status: [400], up: fwdHello(), partialOk: true }, note: "valid, but Bun rejects it: a safe refusal" },
  { name: "chunk extension with BWS", rfc: "RFC 9112 §7.1.1", send: chunkedPost("5 ; a=b\r\nhello\r\n0\r\n\r\n"), expect: { kind: "either", status: [400], up: fwdHello(), partialOk: true } },
  { name: "chunk extension of 100 KiB", rfc: "RFC 9112 §7.1.1", send: chunkedPost(`5;${"a".repeat(100_000)}\r\nhello\r\n0\r\n\r\n`), expect: reject([400, 413], true) },
  { name: "chunk beyond bodyBytesCap", rfc: "RFC 9110 §15.5.14 (SPEC §3.1 stage 8)", send: chunkedPost(`1e8480\r\n${"x".repeat(2_000_000)}\r\n0\r\n\r\n`), expect: reject(413, true) },
  { name: "10,000 one-byte chunks", rfc: "RFC 9112 §7.1", send: chunkedPost("1\r\na\r\n".repeat(10_000) + "0\r\n\r\n"), expect: forward({ method: "POST", body: "a".repeat(10_000), framing: "chunked" }) },
  {
    name: "chunked body invalid after a 32 KiB chunk",
    rfc: "RFC 9112 §7.1, §8",
    send: ["POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8000\r\n" + "a".repeat(0x8000) + "\r\n", "zz\r\n\r\n"],
    gapMs: 150,
    expect: reject(400, true),
    note: "the body streams: the upstream may see the head and the first chunk, then a close, never a last-chunk",
  },
  {
    name: "request trailers",
    rfc: "RFC 9112 §7.1.2, RFC 9110 §6.5",
    send: chunkedPost("5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"),
    expect: reject(400, true),
    note: "Bun ends the body at the last-chunk and answers the trailer section 400 as a new request; forward.ts holds the end of a chunked body one loop turn and drops it when the client is gone",
  },
  {
    name: "trailer that looks like a request",
    rfc: "RFC 9112 §7.1.2, §11.2",
    send: chunkedPost("5\r\nhello\r\n0\r\nGET: /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"),
    expect: reject(400, true),
  },
  { name: "GET with a chunked body", rfc: "RFC 9110 §9.3.1", send: msg(["GET /a HTTP/1.1", H, "Transfer-Encoding: chunked", C], HELLO), expect: reject(400), note: "Bun discards GET content (req.body is null): forwarding without it would change the request" },
  { name: "GET with an invalid chunked body", rfc: "RFC 9110 §9.3.1, RFC 9112 §7.1", send: msg(["GET /a HTTP/1.1", H, "Transfer-Encoding: chunked", C], "zz\r\nhello\r\n0\r\n\r\n"), expect: reject(400), note: "reaches the handler before Bun's own 400: must not be forwarded, and only one 400 may be written" },
  { name: "GET with a Content-Length body", rfc: "RFC 9110 §9.3.1", send: msg(["GET /a HTTP/1.1", H, "Content-Length: 5", C], "hello"), expect: reject(400) },
  { name: "HEAD with a body", rfc: "RFC 9110 §9.3.2", send: msg(["HEAD /a HTTP/1.1", H, "Content-Length: 5", C], "hello"), expect: reject(400) },
  { name: "TRACE with a body", rfc: "RFC 9110 §9.3.8", send: msg(["TRACE /a HTTP/1.1", H, "Content-Length: 5", C], "hello"), expect: reject(400) },
  { name: "GET with Content-Length 0", rfc: "RFC 9110 §8.6", send: get("/a", "Content-Length: 0"), expect: forward({ method: "GET", target: "/a", body: "" }) },
  { name: "DELETE with a body", rfc: "RFC 9110 §9.3.5", send: msg(["DELETE /a HTTP/1.1", H, "Content-Length: 5", C], "hello"), expect: forward({ method: "DELETE", body: "hello", framing: "length" }) },
  { name: "OPTIONS with a body", rfc: "RFC 9110 §9.3.7", send: msg(["OPTIONS /a HTTP/1.1", H, "Content-Length: 5", C], "hello"), expect: forward({ method: "OPTIONS", body: "hello", framing: "length" }) },

  // ---- field syntax (RFC 9112 §2.2, §5; RFC 9110 §5) ---------------------------------------
  { name: "bare CR in a field value", rfc: "RFC 9112 §2.2", send: get("/a", "X-A: a\rb"), expect: reject(400) },
  { name: "bare LF in a field value (header injection)", rfc: "RFC 9112 §2.2", send: get("/a", "X-A: a\nTransfer-Encoding: chunked"), expect: reject(400) },
  { name: "bare LF line endings", rfc: "RFC 9112 §2.2", send: "GET /a HTTP/1.1\nHost: h\nConnection: close\n\n", expect: reject([400, 505]) },
  { name: "bare CR in the request line", rfc: "RFC 9112 §2.2, §3", send: "GET /a\rX HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject([400, 505]) },
  { name: "obs-fold (space)", rfc: "RFC 9112 §5.2", send: get("/a", "X-A: a\r\n b"), expect: reject(400) },
  { name: "obs-fold (tab)", rfc: "RFC 9112 §5.2", send: get("/a", "X-A: a\r\n\tb"), expect: reject(400) },
  { name: "obs-fold of Transfer-Encoding", rfc: "RFC 9112 §5.2, §11.2", send: post(["Transfer-Encoding:\r\n chunked"], HELLO), expect: reject(400) },
  { name: "space before colon (Host)", rfc: "RFC 9112 §5.1", send: "GET /a HTTP/1.1\r\nHost : h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "space before colon (Transfer-Encoding)", rfc: "RFC 9112 §5.1", send: post(["Transfer-Encoding : chunked"], HELLO), expect: reject(400) },
  { name: "space before colon (Content-Length)", rfc: "RFC 9112 §5.1", send: post(["Content-Length : 5"], "hello"), expect: reject(400) },
  { name: "tab before colon", rfc: "RFC 9112 §5.1", send: post(["Transfer-Encoding\t: chunked"], HELLO), expect: reject(400) },
  { name: "NUL in a field value", rfc: "RFC 9110 §5.5", send: get("/a", "X-A: a\x00b"), expect: reject(400) },
  { name: "NUL in a field name", rfc: "RFC 9110 §5.1", send: get("/a", "X\x00A: b"), expect: reject(400) },
  { name: "control byte 0x01 in a value", rfc: "RFC 9110 §5.5", send: get("/a", "X-A: a\x01b"), expect: reject(400) },
  { name: "control byte 0x01 in a name", rfc: "RFC 9110 §5.1", send: get("/a", "X\x01A: b"), expect: reject(400) },
  { name: "ESC in a value", rfc: "RFC 9110 §5.5", send: get("/a", "X-A: a\x1bb"), expect: reject(400) },
  {
    name: "DEL in a value",
    rfc: "RFC 9110 §5.5",
    send: get("/a", "X-A: a\x7fb"),
    expect: either([400], { method: "GET", check: (r) => (r.fields.find(([n]) => n === "x-a")?.[1] === "a\x7fb" ? undefined : "value changed") }),
    note: "Bun lets DEL through; RFC 9110 §5.5 lets a recipient retain it; it is forwarded byte for byte, it frames nothing",
  },
  { name: "obs-text in a value", rfc: "RFC 9110 §5.5", send: get("/a", "X-A: caf\xe9"), expect: forward({ method: "GET", check: (r) => (r.fields.find(([n]) => n === "x-a")?.[1] === "caf\xe9" ? undefined : "obs-text changed") }) },
  { name: "non-token byte in a field name", rfc: "RFC 9110 §5.1, §5.6.2", send: get("/a", "X\xe9: b"), expect: reject(400) },
  { name: "field line without colon", rfc: "RFC 9112 §5", send: get("/a", "XA"), expect: reject(400) },
  { name: "empty field name", rfc: "RFC 9112 §5, RFC 9110 §5.1", send: get("/a", ": b"), expect: reject(400) },
  { name: "whitespace before the first field", rfc: "RFC 9112 §2.2", send: "GET /a HTTP/1.1\r\n X-A: b\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "10,000 header fields", rfc: "RFC 6585 §5, RFC 9112 §5", send: msg(["GET /a HTTP/1.1", H, ...Array.from({ length: 10_000 }, (_, i) => `X-${i}: v`), C]), expect: reject(431) },
  { name: "a 70 KB field value", rfc: "RFC 6585 §5", send: get("/a", `X-A: ${"a".repeat(70_000)}`), expect: reject(431) },
  { name: "fields over limits.headerBytesCap", rfc: "RFC 6585 §5 (SPEC §3.1 stage 1)", send: get("/a", ...Array.from({ length: 20 }, (_, i) => `X-${i}: ${"v".repeat(1024)}`)), expect: reject(431) },
  {
    name: "X_Forwarded_For spoof",
    rfc: "RFC 9110 §5.1 (SPEC §3.6)",
    send: get("/a", "X_Forwarded_For: 6.6.6.6"),
    expect: forward({ method: "GET", check: (r) => (r.raw.includes("6.6.6.6") ? "spoofed address reached the upstream" : undefined) }),
  },

  // ---- request line and target (RFC 9112 §3) ------------------------------------------------
  { name: "absolute-form, same host", rfc: "RFC 9112 §3.2.2", send: "GET http://h/x?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: forward({ method: "GET", target: "/x?q=1" }) },
  {
    name: "absolute-form, other host",
    rfc: "RFC 9112 §3.2.2",
    send: "GET http://other/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    expect: forward({ method: "GET", target: "/x", check: (r) => (r.raw.includes("other") ? "the URI authority leaked upstream" : undefined) }),
    note: "LIMITATION: Bun 1.4.5 builds req.url from Host and exposes no raw target, so the URI authority is lost; Hecate routes on Host and sends that same Host upstream (see corpus.test.ts)",
  },
  { name: "absolute-form https with port", rfc: "RFC 9112 §3.2.2", send: "GET https://h:8443/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: forward({ method: "GET", target: "/x" }) },
  { name: "asterisk-form OPTIONS *", rfc: "RFC 9112 §3.2.4, RFC 9110 §9.3.7", send: "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400), note: "Bun answers 400 itself; no server-wide OPTIONS to forward" },
  { name: "asterisk-form with GET", rfc: "RFC 9112 §3.2.4", send: "GET * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "authority-form with GET", rfc: "RFC 9112 §3.2.3", send: "GET h:80 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "CONNECT", rfc: "RFC 9110 §9.3.6 (SPEC §3.1 stage 1)", send: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nConnection: close\r\n\r\n", expect: reject(405) },
  { name: "#fragment in the target", rfc: "RFC 9112 §3.2.1 (SPEC §3.1 stage 1)", send: get("/a#frag"), expect: reject(400) },
  { name: "target without leading slash", rfc: "RFC 9112 §3.2", send: get("a"), expect: reject(400) },
  { name: "space in the target", rfc: "RFC 9112 §3", send: get("/a b"), expect: reject([400, 505]) },
  { name: "tab in the target", rfc: "RFC 9112 §3", send: get("/a\tb"), expect: reject([400, 505]) },
  { name: "NUL in the target", rfc: "RFC 9112 §3.2", send: get("/a\x00b"), expect: reject([400, 505]) },
  { name: "raw non-ASCII byte in the target", rfc: "RFC 9112 §3.2, RFC 3986 §2", send: get("/caf\xe9"), expect: either([400], { method: "GET", check: (r) => (/^\/caf%[0-9A-F]{2}/.test(r.target) ? undefined : `target ${r.target}`) }), note: "Bun percent-encodes it (as U+FFFD); the upstream gets a valid target" },
  { name: "quote and angle brackets in the target", rfc: "RFC 9112 §3.2, RFC 3986 §2", send: get('/a"<>'), expect: either([400], { method: "GET", target: "/a%22%3C%3E" }) },
  { name: "dot segments", rfc: "RFC 3986 §5.2.4", send: get("/x/../a"), expect: forward({ method: "GET", target: "/a" }), note: "Bun normalises before routing; the upstream gets what was routed" },
  { name: "encoded slash and dots stay encoded", rfc: "RFC 3986 §2.2", send: get("/a%2f..%2fb"), expect: forward({ method: "GET", target: "/a%2f..%2fb" }) },
  { name: "two spaces after the method", rfc: "RFC 9112 §3", send: get(" /a"), expect: reject([400, 505]) },
  { name: "trailing space after the version", rfc: "RFC 9112 §3", send: "GET /a HTTP/1.1 \r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject([400, 505]) },
  { name: "empty line before the request line", rfc: "RFC 9112 §2.2", send: "\r\n" + get("/a"), expect: either([400], { method: "GET", target: "/a" }) },
  { name: "lower-case http/1.1", rfc: "RFC 9112 §2.3", send: "GET /a http/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject([400, 505]) },
  { name: "HTTP/1.2", rfc: "RFC 9112 §2.3", send: "GET /a HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n", expect: either([505], { method: "GET", target: "/a" }) },
  { name: "HTTP/2.0 in an HTTP/1 request line", rfc: "RFC 9112 §2.3", send: "GET /a HTTP/2.0\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject([400, 505]) },
  { name: "HTTP/0.9 simple request", rfc: "RFC 9112 §2.3, §3", send: "GET /\r\n\r\n", expect: reject([400, 505]) },
  { name: "HTTP/1.0 with Host", rfc: "RFC 9112 §2.3", send: "GET /a HTTP/1.0\r\nHost: h\r\n\r\n", expect: forward({ method: "GET", target: "/a" }) },
  { name: "HTTP/1.0 without Host", rfc: "RFC 9112 §3.2 (SPEC §3.1 stage 1)", send: "GET /a HTTP/1.0\r\n\r\n", expect: reject(400) },
  { name: "missing Host", rfc: "RFC 9112 §3.2", send: "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "two Host fields", rfc: "RFC 9112 §3.2", send: "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "two Host fields, same value", rfc: "RFC 9112 §3.2", send: "GET /a HTTP/1.1\r\nHost: h\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "empty Host", rfc: "RFC 9112 §3.2 (SPEC §3.1 stage 1)", send: "GET /a HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "Host with space and @", rfc: "RFC 9110 §7.2", send: "GET /a HTTP/1.1\r\nHost: a b@c\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "Host with userinfo", rfc: "RFC 9110 §7.2, §4.2.4", send: "GET /a HTTP/1.1\r\nHost: u@h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "Host with a path", rfc: "RFC 9110 §7.2", send: "GET /a HTTP/1.1\r\nHost: h/x\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "Host with a non-numeric port", rfc: "RFC 9110 §7.2", send: "GET /a HTTP/1.1\r\nHost: h:ab\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "Host IPv6 literal", rfc: "RFC 9110 §7.2", send: "GET /a HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n", expect: forward({ method: "GET", target: "/a" }) },
  { name: "invalid method G(T", rfc: "RFC 9112 §3.1, RFC 9110 §9.1", send: "G(T /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: reject(400) },
  { name: "lower-case method get", rfc: "RFC 9110 §9.1", send: "get /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: silent(), note: "LIMITATION: Bun closes without answering (RFC 9110 §9.1 suggests 501)" },
  { name: "unknown method FOO", rfc: "RFC 9110 §9.1", send: "FOO /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: silent(), note: "LIMITATION: Bun closes without answering (RFC 9110 §9.1 suggests 501)" },
  { name: "extension method PROPFIND", rfc: "RFC 9110 §9.1, §16.1", send: "PROPFIND /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: forward({ method: "PROPFIND", target: "/a" }) },
  { name: "10 KB method", rfc: "RFC 9112 §3", send: `${"G".repeat(10_000)} /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`, expect: reject([400, 431, 501], false, true), note: "Bun closes without answering" },
  { name: "100 KB request target", rfc: "RFC 9112 §3 (414), RFC 6585 §5", send: get("/" + "a".repeat(100_000)), expect: reject([414, 431]), note: "Bun answers 431 (its head limit) where RFC 9112 §3 asks for 414" },
  { name: "8 KB request target", rfc: "RFC 9112 §3", send: get("/" + "a".repeat(8000)), expect: forward({ method: "GET", target: "/" + "a".repeat(8000) }) },

  // ---- connection management --------------------------------------------------------------
  { name: "two pipelined GETs", rfc: "RFC 9112 §9.3.2", send: "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: pipeline("/1", "/2") },
  { name: "pipelined POST with body, then GET", rfc: "RFC 9112 §9.3.2, §6.3", send: "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: pipeline("/1", "/2") },
  { name: "pipelined chunked POST, then GET", rfc: "RFC 9112 §9.3.2, §7.1", send: "POST /1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + HELLO + "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", expect: pipeline("/1", "/2") },
  { name: "pipelined request inside a chunked body's last chunk", rfc: "RFC 9112 §7.1, §11.2", send: "POST /1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"), expect: pipeline("/1", "/smuggled"), note: "a second request after a complete body is a pipelined request, never part of the first" },
  { name: "Expect: 100-continue", rfc: "RFC 9110 §10.1.1", send: post(["Expect: 100-continue", "Content-Length: 5"], "hello"), expect: forward(fwdHello("length"), [100, 200]) },
  { name: "Expect: unknown", rfc: "RFC 9110 §10.1.1", send: post(["Expect: bogus", "Content-Length: 5"], "hello"), expect: either([417], fwdHello("length")) },
  {
    name: "Upgrade: h2c on HTTP/1.1",
    rfc: "RFC 9113 §3.1, RFC 9110 §7.8",
    send: msg(["GET /a HTTP/1.1", H, "Connection: Upgrade, HTTP2-Settings, close", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]),
    expect: forward({ method: "GET", check: (r) => (r.fields.some(([n]) => /^(upgrade|http2-settings)$/i.test(n)) ? "upgrade fields forwarded" : undefined) }),
  },
];
