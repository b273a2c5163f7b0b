// Behaviour of the pooled HTTP/1.1 upstream transport over real sockets: request framing and
// streaming (20 MiB), backpressure both ways, aborts and cancels, keep-alive rules and the
// stale-connection retry, connect errors and timeouts, pool limits and idle expiry, and the
// 101 Upgrade hand-off.
import { afterAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { createHash } from "node:crypto";
import { ProxyError } from "../../src/errors.ts";
import { H1Transport, type H1TransportOptions } from "../../src/upstream/h1/transport.ts";
import type { UpstreamRequest } from "../../src/upstream/transport.ts";
import { parseUpstreamUrl, type UpstreamTarget } from "../../src/upstream/target.ts";

// ---- helpers ---------------------------------------------------------------------------------

const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups.reverse()) c();
});

function transport(opts: H1TransportOptions = {}): H1Transport {
  const t = new H1Transport(opts);
  cleanups.push(() => t.close());
  return t;
}

function targetFor(port: number): UpstreamTarget {
  const url = `http://127.0.0.1:${port}`;
  return { url, ...parseUpstreamUrl(url), weight: 1, stickyId: "0", index: 0, state: {} as never };
}

function req(port: number, over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    method: "GET",
    target: targetFor(port),
    path: "/",
    host: "test.local",
    headers: [],
    body: null,
    signal: new AbortController().signal,
    connectTimeoutMs: 2000,
    ...over,
  };
}

/** Poll `cond` until true or the deadline passes (no fixed sleeps). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Wait until `value()` stops changing for `quietMs`. */
async function settle(value: () => number, quietMs = 300, ms = 10_000): Promise<number> {
  const end = Date.now() + ms;
  let last = value();
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 20));
    const v = value();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return v;
    if (Date.now() > end) throw new Error("value never settled");
  }
}

async function readAll(body: ReadableStream<Uint8Array> | null): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  const parts: Uint8Array[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return e as ProxyError;
  }
  throw new Error("expected a rejection");
}

interface RawConn {
  buf: Buffer;
  /** Requests (heads) seen on this connection. */
  n: number;
  out: Buffer[];
  drained: (() => void) | null;
  [k: string]: unknown;
}

interface RawServer {
  port: number;
  accepted: number;
  open: number;
  maxOpen: number;
  closed: number;
  heads: string[];
  sockets: Set<Socket<RawConn>>;
}

/** Write all of `data`, resolving when the socket took it (raw sockets do not buffer). */
function rawSend(s: Socket<RawConn>, data: string | Uint8Array): Promise<void> {
  const st = s.data;
  const b = typeof data === "string" ? Buffer.from(data, "latin1") : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (st.out.length === 0) {
    const n = s.write(b);
    if (n < 0 || n === b.length) return Promise.resolve();
    st.out.push(b.subarray(n));
  } else st.out.push(b);
  return new Promise<void>((resolve) => {
    const prev = st.drained;
    st.drained = () => {
      prev?.();
      resolve();
    };
  });
}

/**
 * A raw TCP upstream. `onHead` is called for each request head (bytes after it stay in
 * `s.data.buf`); `onData`, when given, takes over all bytes instead.
 */
function rawServer(h: {
  onHead?: (s: Socket<RawConn>, head: string) => void;
  onData?: (s: Socket<RawConn>, d: Buffer) => void;
  onOpen?: (s: Socket<RawConn>) => void;
}): RawServer {
  const srv: RawServer = { port: 0, accepted: 0, open: 0, maxOpen: 0, closed: 0, heads: [], sockets: new Set() };
  const l = Bun.listen<RawConn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        srv.accepted++;
        srv.open++;
        srv.maxOpen = Math.max(srv.maxOpen, srv.open);
        srv.sockets.add(s);
        s.data = { buf: Buffer.alloc(0), n: 0, out: [], drained: null };
        h.onOpen?.(s);
      },
      data(s, d) {
        if (h.onData) return h.onData(s, d);
        const st = s.data;
        st.buf = st.buf.length > 0 ? Buffer.concat([st.buf, d]) : d;
        for (;;) {
          const e = st.buf.indexOf("\r\n\r\n");
          if (e < 0) return;
          const head = st.buf.toString("latin1", 0, e + 4);
          st.buf = st.buf.subarray(e + 4);
          st.n++;
          srv.heads.push(head);
          h.onHead?.(s, head);
        }
      },
      drain(s) {
        const st = s.data;
        while (st.out.length > 0) {
          const b = st.out[0]!;
          const n = s.write(b);
          if (n < 0) return;
          if (n < b.length) {
            st.out[0] = b.subarray(n);
            return;
          }
          st.out.shift();
        }
        const d = st.drained;
        st.drained = null;
        d?.();
      },
      close(s) {
        srv.open--;
        srv.closed++;
        srv.sockets.delete(s);
        const d = s.data.drained;
        s.data.drained = null;
        d?.();
      },
    },
  });
  srv.port = l.port;
  cleanups.push(() => l.stop(true));
  return srv;
}

const OK = (body = "ok", extra = "") => `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

/** A body stream of `total` bytes in `chunk`-sized pieces of a known pattern; counts what was pulled. */
function patterned(total: number, chunk = 64 * 1024) {
  const state = { pulled: 0, hash: createHash("sha256") };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (state.pulled >= total) return c.close();
        const n = Math.min(chunk, total - state.pulled);
        const b = new Uint8Array(n);
        for (let i = 0; i < n; i += 4096) b[i] = (state.pulled + i) & 0xff;
        b[n - 1] = 0x5a;
        state.pulled += n;
        state.hash.update(b);
        c.enqueue(b);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

// ---- request side ----------------------------------------------------------------------------

describe("request", () => {
  test("head serialisation: request line, host first, headers in order, framing by the transport", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK()) });
    const t = transport();
    const hs = ["accept", "*/*", "x-multi", "a", "x-multi", "b", "content-length", "999", "transfer-encoding", "chunked"];
    await readAll((await t.send(req(srv.port, { method: "GET", path: "/p?q=1", headers: hs }))).body);
    await readAll((await t.send(req(srv.port, { method: "POST", path: "/post", headers: ["x-a", "1"] }))).body);
    await readAll((await t.send(req(srv.port, { method: "PUT", path: "/put", body: new TextEncoder().encode("héllo") }))).body);
    expect(srv.heads[0]).toBe("GET /p?q=1 HTTP/1.1\r\nhost: test.local\r\naccept: */*\r\nx-multi: a\r\nx-multi: b\r\ncontent-length: 0\r\n\r\n");
    expect(srv.heads[1]).toBe("POST /post HTTP/1.1\r\nhost: test.local\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n");
    expect(srv.heads[2]).toBe("PUT /put HTTP/1.1\r\nhost: test.local\r\ncontent-length: 6\r\n\r\n");
    expect(srv.accepted).toBe(1);
  });

  test("header values are sent as latin1 bytes (the inverse of how Bun decodes them)", async () => {
    let raw: Buffer | null = null;
    const srv = rawServer({
      onData: (s, d) => {
        raw = Buffer.from(d);
        void rawSend(s, OK());
      },
    });
    const t = transport();
    await readAll((await t.send(req(srv.port, { headers: ["x-latin1", "caf\u00e9\u00ff"] }))).body);
    expect(raw!.includes(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0xff, 0x0d, 0x0a]))).toBe(true);
  });

  test("a 20 MiB streamed body (chunked) and one with a declared Content-Length arrive intact", async () => {
    const seen: { te: string | null; cl: string | null; hash: string; len: number }[] = [];
    const up = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      maxRequestBodySize: 64 * 1024 * 1024,
      async fetch(r) {
        const h = createHash("sha256");
        let len = 0;
        for await (const c of r.body!) {
          h.update(c);
          len += c.byteLength;
        }
        seen.push({ te: r.headers.get("transfer-encoding"), cl: r.headers.get("content-length"), hash: h.digest("hex"), len });
        return new Response(String(len));
      },
    });
    cleanups.push(() => up.stop(true));
    const t = transport();
    const total = 20 * 1024 * 1024;
    for (const declared of [false, true]) {
      // odd chunk sizes: exercises the small-chunk coalescing and the large-chunk path
      const { stream, state } = patterned(total, declared ? 100_000 : 9_999);
      const res = await t.send(req(up.port!, { method: "POST", path: "/u", body: stream, headers: declared ? ["content-length", String(total)] : [] }));
      expect(res.status).toBe(200);
      expect((await readAll(res.body)).toString()).toBe(String(total));
      const s = seen.at(-1)!;
      expect(s.len).toBe(total);
      expect(s.hash).toBe(state.hash.digest("hex"));
      expect(s.te).toBe(declared ? null : "chunked");
      expect(s.cl).toBe(declared ? String(total) : null);
    }
  });

  test("request backpressure: a stalled upstream stops the pull of the body", async () => {
    const total = 96 * 1024 * 1024;
    let got = 0;
    let reading = false;
    const srv = rawServer({
      onData: (s, d) => {
        if (!reading) {
          s.pause(); // the upstream stops reading after the first bytes
          reading = true;
          s.data.pausedSocket = s;
        }
        got += d.length;
        if (got >= total + 40) void rawSend(s, OK("done"));
      },
    });
    const t = transport();
    const { stream, state } = patterned(total);
    const p = t.send(req(srv.port, { method: "PUT", body: stream, headers: ["content-length", String(total)] }));
    await until(() => reading, "upstream got the head");
    const pulled = await settle(() => state.pulled);
    // kernel socket buffers plus a chunk in flight, far from the 96 MiB available
    expect(pulled).toBeLessThan(24 * 1024 * 1024);
    for (const s of srv.sockets) s.resume();
    const res = await p;
    expect((await readAll(res.body)).toString()).toBe("done");
    expect(state.pulled).toBe(total);
  });

  test("a streamed body longer or shorter than its Content-Length fails the request (bad_request)", async () => {
    const srv = rawServer({});
    const t = transport();
    const long = new Blob(["0123456789"]).stream();
    expect((await rejection(t.send(req(srv.port, { method: "POST", body: long, headers: ["content-length", "5"] })))).code).toBe("bad_request");
    const short = new Blob(["012"]).stream();
    expect((await rejection(t.send(req(srv.port, { method: "POST", body: short, headers: ["content-length", "5"] })))).code).toBe("bad_request");
    await until(() => srv.closed === 2, "both connections closed");
  });

  test("an early response while the body is still streaming: resolved, body reader cancelled, no reuse", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig") });
    const t = transport();
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new Uint8Array(16 * 1024));
      },
      cancel() {
        cancelled = true;
      },
    });
    const res = await t.send(req(srv.port, { method: "POST", body: endless }));
    expect(res.status).toBe(413);
    expect((await readAll(res.body)).toString()).toBe("big");
    await until(() => cancelled, "request body cancelled");
    await until(() => srv.closed === 1, "connection closed");
  });

  test("a failing request body stream fails the attempt with its error", async () => {
    const srv = rawServer({});
    const t = transport();
    const err = new ProxyError("body_too_large", "request body too large", { source: "downstream" });
    let n = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ < 3) c.enqueue(new Uint8Array(1000));
        else c.error(err);
      },
    });
    expect(await rejection(t.send(req(srv.port, { method: "POST", body: failing })))).toBe(err);
    await until(() => srv.closed === 1, "connection closed");
  });
});

// ---- response side ---------------------------------------------------------------------------

describe("response", () => {
  test("response backpressure: an unread body pauses the upstream socket", async () => {
    const total = 1024 * 1024 * 1024;
    let written = 0;
    let stop = false;
    const srv = rawServer({
      onHead: (s) => {
        void (async () => {
          await rawSend(s, `HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`);
          const chunk = Buffer.alloc(256 * 1024, 1);
          while (!stop && written < total) {
            await rawSend(s, chunk);
            written += chunk.length;
          }
        })();
      },
    });
    const t = transport();
    const res = await t.send(req(srv.port));
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    const plateau = await settle(() => written);
    expect(plateau).toBeLessThan(24 * 1024 * 1024);
    // reading resumes the flow
    let read = 0;
    while (read < 64 * 1024 * 1024) read += (await reader.read()).value!.byteLength;
    expect(written).toBeGreaterThan(plateau);
    stop = true;
    await reader.cancel();
    await until(() => srv.closed === 1, "upstream connection closed after cancel");
    expect(t.stats()[`http://127.0.0.1:${srv.port}`]!.open).toBe(0);
  });

  test("cancelling the body mid-stream closes the connection; the next request opens a new one", async () => {
    const srv = rawServer({
      onHead: (s, head) => {
        if (head.startsWith("GET /slow")) void rawSend(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst");
        else void rawSend(s, OK());
      },
    });
    const t = transport();
    const res = await t.send(req(srv.port, { path: "/slow" }));
    const reader = res.body!.getReader();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe("first");
    await reader.cancel();
    await until(() => srv.closed === 1, "closed");
    await readAll((await t.send(req(srv.port))).body);
    expect(srv.accepted).toBe(2);
  });

  test("abort before the head rejects with the signal's ProxyError and closes the connection", async () => {
    const srv = rawServer({}); // never answers
    const t = transport();
    const ac = new AbortController();
    const p = t.send(req(srv.port, { signal: ac.signal }));
    await until(() => srv.heads.length === 1, "request arrived");
    const reason = new ProxyError("timeout", "upstream timed out");
    ac.abort(reason);
    expect(await rejection(p)).toBe(reason);
    await until(() => srv.closed === 1, "upstream saw the close");
    // a non-ProxyError reason maps to client_gone; an already aborted signal rejects at once
    const ac2 = new AbortController();
    ac2.abort(new Error("whatever"));
    expect((await rejection(t.send(req(srv.port, { signal: ac2.signal })))).code).toBe("client_gone");
  });

  test("abort during the body errors the body stream", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n") });
    const t = transport();
    const ac = new AbortController();
    const res = await t.send(req(srv.port, { signal: ac.signal }));
    const reader = res.body!.getReader();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe("abc");
    const reason = new ProxyError("client_gone", "client closed the request", { source: "downstream" });
    ac.abort(reason);
    let err: unknown = null;
    try {
      await reader.read();
    } catch (e) {
      err = e;
    }
    expect(err).toBe(reason);
    await until(() => srv.closed === 1, "closed");
  });

  test("responses with the same head on a connection share one template; their headers are made when read", async () => {
    let extra = "Server: a\r\n";
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK("ok", extra)) });
    const t = transport();
    const r1 = await t.send(req(srv.port));
    const r2 = await t.send(req(srv.port));
    expect(srv.accepted).toBe(1);
    expect(Buffer.from(r2.bodyBytes!).toString()).toBe("ok");
    expect(r1.template).toBeDefined();
    expect(r2.template).toBe(r1.template!);
    expect(Object.fromEntries(r2.template!)).toEqual({ server: "a", "content-length": "2", via: "1.1 hecate", "x-request-id": "-", "x-retry-attempt": "0" });
    // the response's own headers: the upstream's fields only, a Headers of its own
    expect(Object.fromEntries(r2.headers)).toEqual({ server: "a", "content-length": "2" });
    expect(r2.headers).not.toBe(r1.headers);
    expect(r2.undecorated).toBe(true);
    // another head: another template
    extra = "Server: b\r\n";
    const r3 = await t.send(req(srv.port));
    expect(r3.template).not.toBe(r1.template!);
    expect(r3.template!.get("server")).toBe("b");
    expect(r1.template!.get("server")).toBe("a");
    // a head with a field Hecate sets itself: no template (the fields are merged per response)
    extra = "Via: 1.0 up\r\n";
    const r4 = await t.send(req(srv.port));
    expect(r4.template).toBeUndefined();
    expect(r4.undecorated).toBe(false);
    expect(r4.headers.get("via")).toBe("1.0 up");
    expect(srv.accepted).toBe(1);
  });

  test("bytes from an idle connection make it unusable: the next request opens a new one", async () => {
    const srv = rawServer({
      onHead: (s) => {
        void rawSend(s, OK());
        if (s.data.n === 1) setTimeout(() => s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 20);
      },
    });
    const t = transport();
    await readAll((await t.send(req(srv.port))).body);
    await until(() => srv.closed === 1, "idle connection with stray bytes dropped");
    expect((await readAll((await t.send(req(srv.port))).body)).toString()).toBe("ok");
    expect(srv.accepted).toBe(2);
  });
});

// ---- connections ----------------------------------------------------------------------------

describe("connections", () => {
  test("stale keep-alive race: an idempotent request is retried once on a fresh connection", async () => {
    // the upstream answers the first request of a connection, then closes it on the second
    const srv = rawServer({
      onHead: (s) => {
        if (s.data.n === 1) void rawSend(s, OK("fresh"));
        else s.end();
      },
    });
    const t = transport();
    expect((await readAll((await t.send(req(srv.port))).body)).toString()).toBe("fresh");
    expect((await readAll((await t.send(req(srv.port))).body)).toString()).toBe("fresh");
    expect(srv.accepted).toBe(2);
    // not for a POST: the upstream may have acted on it
    const e = await rejection(t.send(req(srv.port, { method: "POST", body: new Uint8Array([1]) })));
    expect(e.code).toBe("upstream_reset");
    expect(e.retryable).toBe(false);
    expect(srv.accepted).toBe(2);
  });

  test("connect refused → connect_error, retryable", async () => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    const e = await rejection(transport().send(req(port)));
    expect(e.code).toBe("connect_error");
    expect(e.retryable).toBe(true);
  });

  test("connect timeout → connect_error, retryable", async () => {
    // a listener whose process is stopped: once its accept queue is full, SYNs go unanswered
    const child = Bun.spawn(
      [process.execPath, "-e", `const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); console.log(l.port); setTimeout(() => process.kill(process.pid, "SIGSTOP"), 20);`],
      { stdout: "pipe", stderr: "inherit" },
    );
    cleanups.push(() => child.kill(9));
    const port = Number(new TextDecoder().decode((await child.stdout.getReader().read()).value).trim());
    await until(() => require("node:fs").readFileSync(`/proc/${child.pid}/stat`, "utf8").split(" ")[2] === "T", "listener stopped");
    const fillers: Socket<undefined>[] = [];
    cleanups.push(() => fillers.forEach((s) => s.terminate()));
    for (let i = 0; i < 5000; i++) {
      const opened = await Promise.race([
        Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then((s) => (fillers.push(s), true)),
        new Promise<false>((r) => setTimeout(() => r(false), 200)),
      ]);
      if (!opened) break;
    }
    const t = transport();
    const t0 = performance.now();
    const e = await rejection(t.send(req(port, { connectTimeoutMs: 300 })));
    expect(e.code).toBe("connect_error");
    expect(e.retryable).toBe(true);
    expect(e.message).toContain("timed out");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(t.stats()[`http://127.0.0.1:${port}`]!.open).toBe(0);
  });

  test("per-origin connection limit: requests over it queue, none fail", async () => {
    const srv = rawServer({ onHead: (s) => setTimeout(() => void rawSend(s, OK("q")), 30) });
    const t = transport({ maxConnsPerOrigin: 2 });
    const results = await Promise.all(Array.from({ length: 8 }, async () => (await readAll((await t.send(req(srv.port))).body)).toString()));
    expect(results).toEqual(Array(8).fill("q"));
    expect(srv.accepted).toBe(2);
    expect(srv.maxOpen).toBe(2);
  });

  test("queued request aborted while waiting is dropped from the queue", async () => {
    const srv = rawServer({ onHead: (s) => setTimeout(() => void rawSend(s, OK()), 50) });
    const t = transport({ maxConnsPerOrigin: 1 });
    const first = t.send(req(srv.port));
    const ac = new AbortController();
    const second = t.send(req(srv.port, { signal: ac.signal }));
    const third = t.send(req(srv.port));
    expect(t.stats()[`http://127.0.0.1:${srv.port}`]!.waiting).toBe(2);
    ac.abort(new ProxyError("timeout", "upstream timed out"));
    expect((await rejection(second)).code).toBe("timeout");
    await readAll((await first).body);
    await readAll((await third).body);
    expect(srv.heads.length).toBe(2);
    expect(srv.accepted).toBe(1);
  });

  test("max idle per origin: extra connections are closed when released", async () => {
    const srv = rawServer({ onHead: (s) => setTimeout(() => void rawSend(s, OK()), 20) });
    const t = transport({ maxIdlePerOrigin: 1 });
    await Promise.all(Array.from({ length: 4 }, async () => readAll((await t.send(req(srv.port))).body)));
    expect(srv.accepted).toBe(4);
    await until(() => srv.closed === 3, "three closed");
    expect(t.stats()[`http://127.0.0.1:${srv.port}`]).toEqual({ open: 1, idle: 1, waiting: 0 });
  });

  test("idle timeout closes pooled connections; an upstream close removes them too", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK()) });
    const t = transport({ idleTimeoutMs: 300 });
    await readAll((await t.send(req(srv.port))).body);
    expect(t.stats()[`http://127.0.0.1:${srv.port}`]!.idle).toBe(1);
    await until(() => srv.closed === 1, "idle connection expired", 3000);
    await until(() => (t.stats()[`http://127.0.0.1:${srv.port}`]?.open ?? 0) === 0, "pool empty");

    const t2 = transport();
    await readAll((await t2.send(req(srv.port))).body);
    for (const s of srv.sockets) s.end(); // the upstream closes its idle side
    await until(() => t2.stats()[`http://127.0.0.1:${srv.port}`]!.idle === 0, "closed idle connection left the pool");
    expect((await readAll((await t2.send(req(srv.port))).body)).toString()).toBe("ok");
  });

  test("a request with Connection: close does not return its connection to the pool", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK()) });
    const t = transport();
    await readAll((await t.send(req(srv.port, { headers: ["connection", "close"] }))).body);
    await until(() => srv.closed === 1, "closed after the exchange");
    await readAll((await t.send(req(srv.port))).body);
    expect(srv.accepted).toBe(2);
  });

  test("an upstream Keep-Alive timeout of 1 s or less means the connection is not pooled", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK("ka", "Keep-Alive: timeout=1\r\n")) });
    const t = transport();
    for (let i = 0; i < 3; i++) expect((await readAll((await t.send(req(srv.port))).body)).toString()).toBe("ka");
    expect(srv.accepted).toBe(3);
    await until(() => srv.closed === 3, "closed instead of pooled");
  });

  test("close() closes idle connections; requests in flight complete, then their connections close", async () => {
    const srv = rawServer({ onHead: (s, head) => (head.startsWith("GET /slow") ? setTimeout(() => void rawSend(s, OK("late")), 50) : void rawSend(s, OK())) });
    const t = new H1Transport();
    await readAll((await t.send(req(srv.port))).body);
    const slow = t.send(req(srv.port, { path: "/slow" }));
    await until(() => srv.heads.length === 2, "slow request sent");
    await readAll((await t.send(req(srv.port))).body); // a second connection, idle again
    expect(srv.accepted).toBe(2);
    t.close();
    await until(() => srv.closed === 1, "idle connection closed by close()");
    expect((await readAll((await slow).body)).toString()).toBe("late");
    await until(() => srv.closed === 2, "busy connection closed after its exchange");
  });
});

// ---- upgrade ---------------------------------------------------------------------------------

describe("upgrade", () => {
  const upgradeHeaders = ["connection", "upgrade", "upgrade", "x-test-proto"];

  test("101: the tunnel gets the bytes after the head, then carries both directions", async () => {
    const srv = rawServer({
      onData: (s, d) => {
        if (s.data.n++ === 0) {
          // the handshake answer and the first frame of the new protocol in one write
          void rawSend(s, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test-proto\r\n\r\nhello");
          return;
        }
        void rawSend(s, `echo:${d.toString()}`);
      },
    });
    const t = transport();
    const res = await t.upgrade(req(srv.port, { headers: upgradeHeaders }));
    expect(res.status).toBe(101);
    expect(res.body).toBeNull();
    expect(res.headers.get("upgrade")).toBe("x-test-proto");
    const tunnel = res.tunnel!;
    expect(Buffer.from(tunnel.head).toString()).toBe("hello");
    expect(srv.heads.length).toBe(0);
    let got = "";
    let closed = false;
    tunnel.setHandlers({ data: (c) => (got += Buffer.from(c).toString()), close: () => (closed = true) });
    expect(tunnel.write("ping")).toBe(4);
    await until(() => got === "echo:ping", "echo through the tunnel");
    // a large write is queued behind the socket and flushed on drain
    let drained = false;
    tunnel.setHandlers({ data: (c) => (got += Buffer.from(c).toString()), drain: () => (drained = true), close: () => (closed = true) });
    const big = Buffer.alloc(32 * 1024 * 1024, 120);
    const n = tunnel.write(big);
    expect(n).toBeGreaterThan(0);
    if (n < big.length) {
      expect(tunnel.bufferedAmount).toBe(big.length - n);
      await until(() => drained && tunnel.bufferedAmount === 0, "queued bytes flushed");
    }
    // the tunnel does not count against the origin's pool
    expect(t.stats()[`http://127.0.0.1:${srv.port}`]!.open).toBe(0);
    for (const s of srv.sockets) s.end();
    await until(() => closed, "tunnel close event");
  });

  test("bytes arriving before setHandlers are delivered once handlers are set", async () => {
    let laterSent = false;
    const srv = rawServer({
      onData: (s) => {
        void rawSend(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n");
        setTimeout(() => void rawSend(s, "later").then(() => (laterSent = true)), 20);
      },
    });
    const res = await transport().upgrade(req(srv.port, { headers: upgradeHeaders }));
    const tunnel = res.tunnel!;
    expect(tunnel.head.length).toBe(0);
    // "later" is sent while nobody listens yet (the tunnel holds it, reading paused)
    await until(() => laterSent, "upstream sent more");
    let got = "";
    tunnel.setHandlers({ data: (c) => (got += Buffer.from(c).toString()) });
    await until(() => got === "later", "buffered bytes delivered");
    tunnel.destroy();
  });

  test("a refused upgrade is an ordinary response, and its connection is not reused", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, OK("no upgrade for you")) });
    const t = transport();
    const res = await t.upgrade(req(srv.port, { headers: upgradeHeaders }));
    expect(res.status).toBe(200);
    expect(res.tunnel).toBeNull();
    expect((await readAll(res.body)).toString()).toBe("no upgrade for you");
    await until(() => srv.closed === 1, "closed after the refused upgrade");
  });

  test("101 to a plain request is a bad_response", async () => {
    const srv = rawServer({ onHead: (s) => void rawSend(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n") });
    expect((await rejection(transport().send(req(srv.port)))).code).toBe("bad_response");
  });
});
