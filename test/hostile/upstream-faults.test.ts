// Upstream faults (SPEC §3.6 errors, §6): an upstream that breaks HTTP in every way we could
// think of, behind a raw Bun.listen fixture. For each fault: the status SPEC §3.6 maps it to
// (502 bad response / reset, 504 timeout), the client never receives a truncated body
// presented as complete (a buffered body ≤ 256 KiB becomes a clean 502; a streamed one ends
// with the client connection aborted, never with a final chunk), bytes an upstream sends
// beyond its framing never become the answer to another request, and the process keeps
// serving: a normal request right after each fault succeeds; an upstream that stalls mid-body
// never pins an exchange or a connection once the client is gone.
//
// Not repeated here (test/e2e/resilience-retry.test.ts, forwarding.test.ts): connection
// refused → 502, reset before headers, reset mid-body (small and large), slow headers past
// perTryTimeoutSec / route timeoutSec → 504.
import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import type { Socket } from "bun";
import * as net from "node:net";
import { startHecate, oneRoute, type Hecate } from "../helpers/hecate.ts";
import { FetchTransport } from "../../src/upstream/fetch-transport.ts";
import { H1Transport } from "../../src/upstream/h1/transport.ts";
import type { UpstreamTransport } from "../../src/upstream/transport.ts";
import { parseRequest, parseResponses, rawRequest, until } from "./wire.ts";

type Outcome =
  /** a complete response from Hecate with this status */
  | { status: number }
  /** the upstream's answer, whole: 200 with exactly this body */
  | { body: string }
  /** either a clean 502, or a 200 head whose body is cut off by a closed connection */
  | { cut: true }
  /** either a clean 502 or the upstream's answer, whole (a lenient parser's call, not an error) */
  | { clean: true };

interface Fault {
  name: string;
  /** What the upstream does once it has read the request. */
  act(s: Socket<Conn>): void;
  want: Outcome;
  /** Where FetchTransport (Bun's fetch; used for https:// upstreams) differs, and why that is still safe. */
  fetch?: { want: Outcome; why: string };
  /** Extra bytes after the answer must not reach the next request: send a second request on the same pool. */
  followUp?: boolean;
}

interface Conn {
  buf: Buffer;
  /** the fault, once the request head is in */
  fault: Fault | null;
}

const OK_BODY = "fine\n";
const okResponse = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${OK_BODY.length}\r\n\r\n${OK_BODY}`;
const head = (lines: string[]) => lines.join("\r\n") + "\r\n\r\n";
const KiB = 1024;
/** Write then close (FIN) or reset (RST) after the bytes are out. */
const thenEnd = (s: Socket<Conn>, data: string | Buffer, how: "close" | "reset" = "close") => {
  s.write(data);
  s.flush();
  setTimeout(() => (how === "reset" ? s.terminate() : s.end()), 20);
};

const FAULTS: Fault[] = [
  {
    name: "truncated chunked body (small)",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "transfer-encoding: chunked"]) + "5\r\nhello\r\n3\r\nwo"),
    want: { cut: true },
  },
  {
    name: "truncated chunked body (large), closed between chunks",
    act: (s) => thenEnd(s, Buffer.concat([Buffer.from(head(["HTTP/1.1 200 OK", "transfer-encoding: chunked"])), ...Array.from({ length: 20 }, () => Buffer.from(`4000\r\n${"x".repeat(16 * KiB)}\r\n`))])),
    want: { cut: true },
  },
  {
    name: "Content-Length longer than the body, then close (small, buffered)",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "content-length: 1000"]) + "x".repeat(500)),
    want: { status: 502 },
  },
  {
    name: "Content-Length longer than the body, then close (large, streamed)",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", `content-length: ${1024 * KiB}`]) + "x".repeat(300 * KiB)),
    want: { cut: true },
  },
  {
    name: "Content-Length shorter than the body: the extra bytes are dropped, never a response",
    act: (s) => s.write(head(["HTTP/1.1 200 OK", "content-length: 6"]) + "hello\n" + head(["HTTP/1.1 200 OK", "content-length: 9"]) + "SMUGGLED\n"),
    want: { body: "hello\n" },
    followUp: true,
  },
  {
    name: "bytes after a 204",
    act: (s) => s.write(head(["HTTP/1.1 204 No Content"]) + head(["HTTP/1.1 200 OK", "content-length: 9"]) + "SMUGGLED\n"),
    want: { status: 204 },
    followUp: true,
  },
  {
    name: "both Content-Length and Transfer-Encoding",
    act: (s) => s.write(head(["HTTP/1.1 200 OK", "content-length: 3", "transfer-encoding: chunked"]) + "6\r\nhello\n\r\n0\r\n\r\n" + head(["HTTP/1.1 200 OK", "content-length: 9"]) + "SMUGGLED\n"),
    want: { status: 502 },
    followUp: true,
  },
  {
    name: "two different Content-Length fields",
    act: (s) => s.write(head(["HTTP/1.1 200 OK", "content-length: 6", "content-length: 20"]) + "hello\n"),
    want: { status: 502 },
  },
  { name: "invalid chunk size", act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "transfer-encoding: chunked"]) + "zz\r\nhello\r\n0\r\n\r\n"), want: { cut: true } },
  { name: "garbage status line", act: (s) => thenEnd(s, "HELLO THERE\r\n\r\n"), want: { status: 502 } },
  { name: "status code out of range", act: (s) => thenEnd(s, head(["HTTP/1.1 2000 OK", "content-length: 0"])), want: { status: 502 } },
  { name: "binary garbage", act: (s) => thenEnd(s, Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 151 + 7) & 0xff))), want: { status: 502 } },
  { name: "HTTP/0.9-style answer (no status line)", act: (s) => thenEnd(s, "<html>hello</html>\n"), want: { status: 502 } },
  { name: "NUL in a header value", act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "x-a: a\x00b", "content-length: 0"])), want: { status: 502 } },
  {
    name: "bare LF inside a header value",
    act: (s) => thenEnd(s, "HTTP/1.1 200 OK\r\nx-a: a\nx-b: b\r\ncontent-length: 0\r\n\r\n"),
    want: { status: 502 },
    fetch: { want: { clean: true }, why: "fetch reads a lone LF as a line end (RFC 9112 §2.2 allows it): two fields, re-serialised with CRLF" },
  },
  {
    name: "huge header (1 MiB)",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", `x-huge: ${"h".repeat(1024 * KiB)}`, "content-length: 0"])),
    want: { status: 502 },
    fetch: { want: { clean: true }, why: "fetch has no response head limit below 1 MiB: the field passes through (bounded: one response)" },
  },
  { name: "10,000 headers", act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", ...Array.from({ length: 10_000 }, (_, i) => `x-${i}: v`), "content-length: 0"])), want: { status: 502 } },
  { name: "101 Switching Protocols to a plain GET", act: (s) => thenEnd(s, head(["HTTP/1.1 101 Switching Protocols", "upgrade: h2c", "connection: upgrade"]) + "\x00\x00\x00garbage"), want: { status: 502 } },
  {
    name: "100 Continue and 103 Early Hints before the answer",
    act: (s) => s.write(head(["HTTP/1.1 100 Continue"]) + head(["HTTP/1.1 103 Early Hints", "link: </a.css>; rel=preload"]) + okResponse),
    want: { body: OK_BODY },
    followUp: true,
  },
  {
    name: "close-delimited body (no length, then close)",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "connection: close"]) + "until the end\n"),
    want: { body: "until the end\n" },
  },
  {
    name: "reset in the middle of a close-delimited body",
    act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "connection: close"]) + "the first part of it\n", "reset"),
    want: { cut: true },
    fetch: {
      want: { body: "the first part of it\n" },
      why: "Bun's fetch ends a close-delimited body at a reset as at a FIN: nothing in its API tells them apart (README, known limitations)",
    },
  },
  { name: "reset right after the headers of a chunked body", act: (s) => thenEnd(s, head(["HTTP/1.1 200 OK", "transfer-encoding: chunked"]), "reset"), want: { cut: true } },
  {
    name: "Connection naming something that is not a field name",
    act: (s) => s.write(head(["HTTP/1.1 200 OK", "connection: x y, ;", "x-y: 1", "content-length: 5"]) + "fine\n"),
    want: { body: OK_BODY },
  },
  { name: "never answers (per-try timeout)", act: () => {}, want: { status: 504 } },
];

/** The fault fixture: `/f/<index>` gets FAULTS[index], anything else a normal answer. */
function faultUpstream() {
  const open = new Set<Socket<Conn>>();
  let closed = 0;
  const l = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: Buffer.alloc(0), fault: null };
        open.add(s);
      },
      data(s, chunk) {
        s.data.buf = Buffer.concat([s.data.buf, chunk]);
        for (;;) {
          const r = parseRequest(s.data.buf);
          if (r.kind !== "request") return;
          s.data.buf = s.data.buf.subarray(r.end);
          const m = /^\/f\/(\d+)$/.exec(r.req.target);
          if (m) {
            s.data.fault = FAULTS[Number(m[1])]!;
            s.data.fault.act(s);
          } else s.write(okResponse);
        }
      },
      close(s) {
        open.delete(s);
        closed++;
      },
      error() {},
    },
  });
  return {
    url: `http://127.0.0.1:${l.port}`,
    /** Connections currently open that are stuck in a fault with no answer. */
    stuck: () => [...open].filter((s) => s.data.fault?.want && "status" in s.data.fault.want && s.data.fault.want.status === 504).length,
    closed: () => closed,
    stop: () => l.stop(true),
  };
}

const transports: Record<string, () => UpstreamTransport> = {
  h1: () => new H1Transport(),
  fetch: () => new FetchTransport(),
};

for (const [tname, make] of Object.entries(transports)) {
  describe(`upstream faults, ${tname} transport`, () => {
    let up: ReturnType<typeof faultUpstream>;
    let h: Hecate;
    let port: number;
    beforeAll(async () => {
      up = faultUpstream();
      h = await startHecate(oneRoute([up.url], {}, { retry: { maxRetries: 0, perTryTimeoutSec: 0.5 }, circuitBreaker: { enabled: false } }));
      h.rt.httpTransport.close();
      h.rt.httpTransport = make();
      port = Number(new URL(h.url).port);
    });
    afterAll(async () => {
      await h.shutdown();
      up.stop();
    });

    /** A normal request through the same Hecate (and the same upstream pool). */
    async function normal(): Promise<void> {
      const r = await rawRequest(port, "GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
      const res = parseResponses(r.bytes, r.closed).responses;
      expect(res.map((x) => x.status)).toEqual([200]);
      expect(res[0]!.body.toString()).toBe(OK_BODY);
    }

    FAULTS.forEach((f, i) => {
      test(f.name, async () => {
        const t0 = performance.now();
        const r = await rawRequest(port, `GET /f/${i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`, { deadlineMs: 10_000 });
        const p = parseResponses(r.bytes, r.closed);
        expect(r.timedOut).toBe(false);
        expect(p.garbage).toBe(false);
        const w = tname === "fetch" && f.fetch ? f.fetch.want : f.want;
        if ("status" in w) {
          expect(p.partial).toBe(false);
          expect(p.responses.map((x) => x.status)).toEqual([w.status]);
          const res = p.responses[0]!;
          if (w.status >= 500) {
            expect(res.headers.some(([n]) => n === "x-request-id")).toBe(true);
            // Hecate's short text/plain answer, nothing of the upstream's bytes
            expect(res.headers.find(([n]) => n === "content-type")?.[1]).toBe("text/plain; charset=utf-8");
            expect(res.body.toString()).toMatch(/^[\w .,:/()-]{1,160}\n$/);
            expect(res.body.toString()).not.toMatch(/SMUGGLED|html|hhhh|garbage/);
          }
          if (w.status === 504) expect(performance.now() - t0).toBeLessThan(3000);
        } else if ("body" in w) {
          expect(p.partial).toBe(false);
          expect(p.responses.map((x) => x.status)).toEqual([200]);
          expect(p.responses[0]!.body.toString()).toBe(w.body);
        } else if ("clean" in w) {
          expect(p.partial).toBe(false);
          expect(p.responses.length).toBe(1);
          expect([200, 502]).toContain(p.responses[0]!.status);
        } else {
          // cut: a 502, or a head and a body that never completes (closed without its end), or
          // (an error before the first body byte) a connection closed with no answer or half a head
          const res = p.responses;
          expect(res.length).toBeLessThanOrEqual(1);
          if (res.length === 0) expect(r.closed && (r.bytes.length === 0 || p.partial)).toBe(true);
          else if (res[0]!.status === 502) expect(p.partial).toBe(false);
          else {
            expect(res[0]!.status).toBe(200);
            expect(res[0]!.complete).toBe(false);
            expect(r.closed).toBe(true);
          }
        }
        await until(() => h.rt.inflight === 0, 5000, "the exchange to finish");
        if ("status" in w && w.status === 504) await until(() => up.stuck() === 0, 3000, "Hecate to close the silent upstream connection");
        // the process keeps serving; bytes the fault left behind never answer this request
        await normal();
        if (f.followUp) for (let k = 0; k < 3; k++) await normal();
      });
    });

    test("a buffered body that stalls: the client leaving ends the exchange and frees the upstream connection", async () => {
      let closed = 0;
      let opened = 0;
      const stall = Bun.listen({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open: () => void opened++,
          data: (s) => void s.write(head(["HTTP/1.1 200 OK", "content-length: 1000"]) + "x".repeat(500)), // then silence
          close: () => void closed++,
          error() {},
        },
      });
      const h2 = await startHecate(oneRoute([`http://127.0.0.1:${stall.port}`], {}, { retry: { maxRetries: 0 } }));
      h2.rt.httpTransport.close();
      h2.rt.httpTransport = make();
      try {
        const r = await rawRequest(Number(new URL(h2.url).port), "GET / HTTP/1.1\r\nHost: h\r\n\r\n", { deadlineMs: 500 });
        expect(r.bytes.length).toBe(0); // nothing of a body that never completed
        await until(() => h2.rt.inflight === 0, 3000, "the exchange to end after the client left");
        await until(() => closed === opened, 3000, "the upstream connection to be closed");
      } finally {
        await h2.shutdown();
        stall.stop(true);
      }
    });

    test("after every fault: still serving, nothing in flight", async () => {
      await normal();
      expect(h.rt.inflight).toBe(0);
    });
  });
}

test("h1: a reset in the middle of a large close-delimited body the client has not read yet: the client's response is cut, never complete", async () => {
  // The body outruns the client (which reads nothing at first), so the transport pauses the
  // upstream socket and later reads it itself (pull → recv). The reset then reaches either Bun's
  // close handler or that recv(); both must fail the body, not end it.
  let resetDone!: () => void;
  const reset = new Promise<void>((r) => (resetDone = r));
  const up = net.createServer((s) => {
    s.on("error", () => {});
    s.once("data", () => {
      s.write(head(["HTTP/1.1 200 OK", "connection: close"]));
      s.write(Buffer.alloc(4 * 1024 * 1024, 97));
      setTimeout(() => {
        s.resetAndDestroy();
        resetDone();
      }, 100);
    });
  });
  await new Promise<void>((r) => up.listen(0, "127.0.0.1", r));
  const h = await startHecate(oneRoute([`http://127.0.0.1:${(up.address() as net.AddressInfo).port}`], {}, { retry: { maxRetries: 0 } }));
  try {
    const c = net.connect(Number(new URL(h.url).port), "127.0.0.1");
    c.on("error", () => {});
    c.pause();
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((r) => c.on("close", () => r()));
    c.on("data", (d: Buffer) => chunks.push(d));
    c.write("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    await reset;
    c.resume();
    await closed; // a complete response would leave this keep-alive connection open
    const all = Buffer.concat(chunks);
    const p = parseResponses(all, true);
    // cut: a head and a body that never completes, or (the proxy aborted the connection with a
    // reset, which discards what the client had not read yet) nothing at all
    if (p.responses.length === 0) expect(all.length === 0 || p.partial).toBe(true);
    else {
      expect(p.responses.length).toBe(1);
      expect(p.responses[0]!.status).toBe(200);
      expect(p.responses[0]!.complete).toBe(false);
    }
    await until(() => h.rt.inflight === 0, 5000, "the exchange to finish");
  } finally {
    await h.shutdown();
    up.close();
  }
});
