// A slow upload is the client's time, not the upstream's (SPEC §3.6, §3.7, §3.5): the per-try
// and route timeouts bound the time to response headers counted from the end of the request
// body (as Envoy's do), so an upload that takes longer than perTryTimeoutSec still succeeds,
// and slow clients cannot open an upstream's circuit breaker for everyone. Found with
// bench/hostile.sh: under slowhttptest -B, every upload became a 504 after perTryTimeoutSec
// (default 2 s) and the breaker opened, so every other client got 503.
import { test, expect, afterAll } from "bun:test";
import { connect } from "node:net";
import { startHecate, oneRoute, type Hecate } from "../helpers/hecate.ts";

const started: { stop(): unknown }[] = [];
afterAll(async () => {
  for (const s of started.reverse()) await s.stop();
});

function echoUpstream(afterBodyMs = 0) {
  const s = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const n = (await req.arrayBuffer()).byteLength;
      if (afterBodyMs > 0) await Bun.sleep(afterBodyMs);
      return new Response(`got ${n}\n`);
    },
  });
  started.push({ stop: () => s.stop(true) });
  return s;
}

async function hecate(upPort: number): Promise<Hecate> {
  const h = await startHecate(
    oneRoute([`http://127.0.0.1:${upPort}`], { timeoutSec: 0.6 }, { retry: { maxRetries: 0, perTryTimeoutSec: 0.3 }, circuitBreaker: { openAfterConsecutiveFailures: 2 } }),
  );
  started.push({ stop: () => h.shutdown() });
  return h;
}

/** POST `total` bytes in `pieces` writes `gapMs` apart (chunked when `chunked`); returns status line, body, ms. */
function trickle(port: number, total: number, pieces: number, gapMs: number, chunked = false): Promise<{ status: string; body: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(port, "127.0.0.1");
    let out = "";
    s.on("data", (d) => (out += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () => resolve({ status: out.slice(0, out.indexOf("\r\n")), body: out.slice(out.indexOf("\r\n\r\n") + 4), ms: performance.now() - t0 }));
    s.write(`POST /up HTTP/1.1\r\nHost: h\r\n${chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${total}`}\r\nConnection: close\r\n\r\n`);
    const size = Math.ceil(total / pieces);
    let sent = 0;
    const tick = setInterval(() => {
      if (out !== "" || sent >= total) {
        clearInterval(tick);
        if (chunked && out === "") s.write("0\r\n\r\n");
        return;
      }
      const n = Math.min(size, total - sent);
      s.write(chunked ? `${n.toString(16)}\r\n${"a".repeat(n)}\r\n` : "a".repeat(n));
      sent += n;
    }, gapMs);
  });
}

test("uploads longer than perTryTimeoutSec and timeoutSec succeed, and the breaker stays closed", async () => {
  const up = echoUpstream();
  const h = await hecate(up.port!);
  const port = Number(new URL(h.url).port);
  // streamed (over retryBufferBytes), chunked, and buffered bodies, each trickled over ~1 s (> 0.3 s per try, > 0.6 s route)
  for (let i = 0; i < 3; i++) {
    const r = await trickle(port, 100 * 1024, 10, 100);
    expect(r.status).toBe("HTTP/1.1 200 OK");
    expect(r.body).toBe(`got ${100 * 1024}\n`);
    expect(r.ms).toBeGreaterThan(900);
  }
  const c = await trickle(port, 100 * 1024, 10, 100, true);
  expect(c.status).toBe("HTTP/1.1 200 OK");
  expect(c.body).toBe(`got ${100 * 1024}\n`);
  const small = await trickle(port, 1000, 10, 100);
  expect(small.status).toBe("HTTP/1.1 200 OK");
  expect(small.body).toBe("got 1000\n");
  const ups = (await (await fetch(`${h.adminUrl}/admin/upstreams`)).json()) as { upstreams: { breaker: string }[] };
  expect(ups.upstreams[0]!.breaker).toBe("closed");
  expect((await fetch(`${h.url}/after`, { method: "POST", body: "x" })).status).toBe(200);
}, 20_000);

test("once the body has ended, the per-try timeout still bounds the wait for headers → 504", async () => {
  const up = echoUpstream(3000);
  const h = await hecate(up.port!);
  const port = Number(new URL(h.url).port);
  const r = await trickle(port, 100 * 1024, 5, 100); // body ends after ~0.5 s
  expect(r.status).toBe("HTTP/1.1 504 Gateway Timeout");
  expect(r.ms).toBeGreaterThan(500 + 250);
  expect(r.ms).toBeLessThan(500 + 1500);
});
