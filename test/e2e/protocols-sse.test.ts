// Server-sent events and long streams (SPEC §3.6): each event reaches the client as soon as the
// upstream sends it, before the upstream ends the stream; a stream that keeps making progress is
// not cut by the idle timeout, the per-try timeout or the route timeout; HTTP/1.1 and HTTP/2.
import { test, expect, afterAll } from "bun:test";
import { connect } from "node:net";
import { startHecate } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";

const enc = new TextEncoder();
/** Events the upstream sent, with the time each was sent; the upstream waits for `next()`. */
const sentAt: number[] = [];
const gate: (() => void)[] = [];
const up = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  idleTimeout: 30,
  fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/events") {
      // one event per release by the test; the first at once (Bun sends the head with it)
      let n = 0;
      return new Response(
        new ReadableStream({
          async pull(c) {
            if (n > 0) await new Promise<void>((r) => gate.push(r));
            sentAt[n] = performance.now();
            c.enqueue(enc.encode(`id: ${n}\ndata: event ${n}\n\n`));
            if (++n === 5) c.close();
          },
        }),
        { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } },
      );
    }
    if (url.pathname === "/ticker") {
      // a long stream: one small chunk every 500 ms for `n` chunks
      const total = Number(url.searchParams.get("n") ?? "10");
      let i = 0;
      return new Response(
        new ReadableStream({
          async pull(c) {
            if (i > 0) await Bun.sleep(500);
            c.enqueue(enc.encode(`tick ${i}\n`));
            if (++i === total) c.close();
          },
        }),
        { headers: { "content-type": "text/plain" } },
      );
    }
    if (url.pathname === "/stall") {
      // one chunk, then silence (the stream stays open)
      let i = 0;
      return new Response(
        new ReadableStream({
          async pull(c) {
            if (i++ === 0) return c.enqueue(enc.encode("first\n"));
            await new Promise(() => {});
          },
        }),
      );
    }
    return new Response("?", { status: 404 });
  },
});

const pki = makePki();
const [crt, key] = pki.server("sse", ["127.0.0.1"]);
const plain = await startHecate({
  proxy: { server: { idleTimeoutSec: 2 }, routes: [{ name: "sse", upstreams: [`http://127.0.0.1:${up.port}`] }] },
});
const h = await startHecate({
  proxy: {
    // idle timeout 2 s and per-try/route timeouts of 1 s: the 6 s ticker outlives all of them
    server: { idleTimeoutSec: 2 },
    retry: { perTryTimeoutSec: 1 },
    routes: [{ name: "sse", upstreams: [`http://127.0.0.1:${up.port}`], timeoutSec: 1 }],
  },
  tls: { certFiles: [crt], keyFiles: [key] },
});

afterAll(async () => {
  await h.shutdown();
  await plain.shutdown();
  up.stop(true);
  pki.cleanup();
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(2);
  }
}

for (const protocol of ["http1.1", "http2"] as const) {
  test(`SSE over ${protocol}: each event arrives before the next is sent`, async () => {
    sentAt.length = 0;
    gate.length = 0;
    const r = await fetch(`${h.url}/events`, { tls: { ca: await Bun.file(pki.caCert).text() }, protocol } as any);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/event-stream");
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const gotAt: number[] = [];
    for (let i = 0; i < 5; i++) {
      if (i > 0) {
        await until(() => gate.length > 0);
        gate.shift()!();
      }
      // read until event i is complete
      while (!buf.includes(`data: event ${i}\n\n`)) {
        const { done, value } = await reader.read();
        if (done) throw new Error(`stream ended before event ${i}`);
        buf += dec.decode(value, { stream: true });
      }
      gotAt[i] = performance.now();
      // the client has event i while the upstream has not sent event i + 1 (it waits on us)
      expect(sentAt.length).toBe(i + 1);
    }
    expect((await reader.read()).done).toBe(true);
    expect(buf).toBe([0, 1, 2, 3, 4].map((i) => `id: ${i}\ndata: event ${i}\n\n`).join(""));
    for (let i = 0; i < 5; i++) expect(gotAt[i]!).toBeGreaterThanOrEqual(sentAt[i]!);
  });
}

test("a 6 s stream that makes progress outlives the 2 s idle timeout and the 1 s timeouts (h2, h1)", async () => {
  for (const [args, base] of [
    [["--cacert", pki.caCert, "--http2"], h.url],
    [["--http1.1"], plain.url],
  ] as const) {
    const started = performance.now();
    const r = await curl([...args, "-N", `${base}/ticker?n=12`]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(Array.from({ length: 12 }, (_, i) => `tick ${i}\n`).join(""));
    expect(performance.now() - started).toBeGreaterThan(5000);
  }
}, 30_000);

test("a stream that stops making progress is cut after about idleTimeoutSec", async () => {
  const started = performance.now();
  const r = await curl(["-N", `${plain.url}/stall`]);
  const secs = (performance.now() - started) / 1000;
  expect(r.out).toBe("first\n");
  expect(r.code).not.toBe(0); // not a clean end: the body is incomplete
  expect(secs).toBeGreaterThan(1.5);
  expect(secs).toBeLessThan(8);
}, 20_000);

test("after a streamed response, an idle keep-alive connection is still closed", async () => {
  const s = connect(plain.listeners.publicServer.port!, "127.0.0.1");
  let buf = "";
  let closedAt = 0;
  let lastData = 0;
  s.on("data", (d) => {
    buf += d.toString();
    lastData = performance.now();
  });
  s.on("close", () => (closedAt = performance.now()));
  s.write("GET /ticker?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
  await until(() => buf.includes("tick 2") && buf.endsWith("0\r\n\r\n"), 5000);
  await until(() => closedAt > 0, 12_000);
  const idleFor = (closedAt - lastData) / 1000;
  expect(idleFor).toBeGreaterThan(1);
  expect(idleFor).toBeLessThan(9);
}, 20_000);
