// Retries (SPEC §3.7) and the per-try timeout (§3.6) against fault-injecting upstreams.
import { test, expect, afterEach } from "bun:test";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { statusUpstream, refusedUrl, slowHeaders, slowBody, patternByte, resetBeforeHeaders, resetMidBody, waitFor, type Fixture } from "../helpers/faults.ts";
import { RESPONSE_BUFFER_BYTES } from "../../src/upstream/forward.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
function track<T extends Fixture>(f: T): T {
  cleanup.push(() => f.stop());
  return f;
}
async function hecate(upstreams: string[], route: Record<string, any> = {}, proxy: Record<string, any> = {}): Promise<Hecate> {
  const h = await startHecate({
    proxy: {
      retry: { backoffBaseMs: 1, backoffMaxMs: 5, ...proxy.retry },
      ...proxy,
      routes: [{ name: "r", upstreams, ...route }],
    },
  });
  cleanup.push(() => h.shutdown());
  return h;
}

test("GET: 503 then 200 → the client sees 200 with X-Retry-Attempt: 1", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url]);
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  expect(((await r.json()) as any).i).toBe(1);
  expect(up.seen.map((s) => s.headers["x-hecate-retry-attempt"])).toEqual(["0", "1"]);
  // Via is added once per hop, whatever the retries
  expect(up.seen[1]!.headers["via"]).toBe("1.1 hecate");
});

test("retries exhausted: the last upstream answer is returned as it is", async () => {
  const up = track(statusUpstream([503]));
  const h = await hecate([up.url], {}, { retry: { maxRetries: 2 } });
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(503);
  expect(r.headers.get("x-retry-attempt")).toBe("2");
  expect(((await r.json()) as any).i).toBe(2); // the upstream's own body
  expect(up.seen.length).toBe(3);
});

test("a 500 is an application answer: not retried", async () => {
  const up = track(statusUpstream([500, 200]));
  const h = await hecate([up.url]);
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(500);
  expect(up.seen.length).toBe(1);
});

test("per-route retry override: maxRetries 0 on the route", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url], { retry: { maxRetries: 0 } }, { retry: { maxRetries: 3 } });
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(503);
  expect(r.headers.get("x-retry-attempt")).toBe("0");
  expect(up.seen.length).toBe(1);
});

test("retryOn5xx: false on the route turns 5xx retries off", async () => {
  const up = track(statusUpstream([502, 200]));
  const h = await hecate([up.url], { retry: { retryOn5xx: false } });
  expect((await fetch(`${h.url}/x`)).status).toBe(502);
  expect(up.seen.length).toBe(1);
});

test("a retry prefers an upstream not yet tried", async () => {
  const bad = track(statusUpstream([503]));
  const good = track(statusUpstream([200]));
  // maxRetries 1: only a retry that moves to the other upstream can succeed
  const h = await hecate([bad.url, good.url], {}, { retry: { maxRetries: 1 }, circuitBreaker: { enabled: false } });
  for (let i = 0; i < 6; i++) {
    const r = await fetch(`${h.url}/x`);
    expect(r.status).toBe(200);
    await r.arrayBuffer();
  }
  expect(bad.seen.length).toBeGreaterThan(0);
});

test("POST is not retried after a 503", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url]);
  const r = await fetch(`${h.url}/x`, { method: "POST", body: "hello" });
  expect(r.status).toBe(503);
  expect(r.headers.get("x-retry-attempt")).toBe("0");
  expect(up.seen.length).toBe(1);
});

test("POST is retried after connection refused, body replayed", async () => {
  const good = track(statusUpstream([200]));
  const h = await hecate([refusedUrl(), good.url]); // round robin: the first pick is the refused one
  const r = await fetch(`${h.url}/x`, { method: "POST", body: "hello body" });
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  expect(good.seen.length).toBe(1);
  expect(good.seen[0]!.body).toBe("hello body");
  expect(good.seen[0]!.headers["x-hecate-retry-attempt"]).toBe("1");
});

test("POST with Idempotency-Key is retried after a 503, body replayed", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url]);
  const r = await fetch(`${h.url}/x`, { method: "POST", body: "payload-1", headers: { "idempotency-key": "k1" } });
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  expect(up.seen.map((s) => s.body)).toEqual(["payload-1", "payload-1"]);
});

test("retryIdempotent: false stops GET 5xx retries but not Idempotency-Key ones", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url], { retry: { retryIdempotent: false } });
  expect((await fetch(`${h.url}/x`)).status).toBe(503);
  up.setStatuses([503, 200]);
  const r = await fetch(`${h.url}/x`, { headers: { "idempotency-key": "abc" } });
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
});

test("a chunked body that fits retryBufferBytes is replayed", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url]);
  const parts = ["chunk-a;", "chunk-b;", "chunk-c"];
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const p = parts.shift();
      if (p === undefined) return c.close();
      c.enqueue(new TextEncoder().encode(p));
    },
  });
  const r = await fetch(`${h.url}/x`, { method: "PUT", body, duplex: "half" } as RequestInit);
  expect(r.status).toBe(200);
  expect(up.seen.map((s) => s.body)).toEqual(["chunk-a;chunk-b;chunk-c", "chunk-a;chunk-b;chunk-c"]);
});

test("a body larger than retryBufferBytes is not retried once sent", async () => {
  const up = track(statusUpstream([503, 200]));
  const h = await hecate([up.url], {}, { retry: { retryBufferBytes: 1024 } });
  const big = "x".repeat(200_000);
  const r = await fetch(`${h.url}/x`, { method: "PUT", body: big });
  expect(r.status).toBe(503);
  expect(up.seen.length).toBe(1);
  expect(up.seen[0]!.body.length).toBe(200_000);
});

test("a body larger than retryBufferBytes is still retried after connection refused (nothing was sent)", async () => {
  const good = track(statusUpstream([200]));
  const h = await hecate([refusedUrl(), good.url], {}, { retry: { retryBufferBytes: 1024 } });
  const big = "y".repeat(300_000);
  const r = await fetch(`${h.url}/x`, { method: "POST", body: big });
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  expect(good.seen[0]!.body).toBe(big);
});

test("per-try timeout: GET retried then 504; POST not retried", async () => {
  const up = track(slowHeaders(1500));
  const h = await hecate([up.url], {}, { retry: { perTryTimeoutSec: 0.15, maxRetries: 1 } });
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(504);
  expect(await r.text()).toBe("upstream timed out\n");
  expect(up.seen.length).toBe(2);
  expect(up.seen.map((s) => s.headers["x-hecate-retry-attempt"])).toEqual(["0", "1"]);
  const p = await fetch(`${h.url}/x`, { method: "POST", body: "b" });
  expect(p.status).toBe(504);
  expect(up.seen.length).toBe(3);
});

test("perTryTimeoutSec bounds time to headers only: a slow 5 MiB body arrives whole", async () => {
  const size = 5 * 1024 * 1024;
  const up = track(slowBody(size, 1200));
  const h = await hecate([up.url], {}, { retry: { perTryTimeoutSec: 0.3 } });
  const t0 = performance.now();
  const r = await fetch(`${h.url}/big`);
  expect(r.status).toBe(200);
  const buf = new Uint8Array(await r.arrayBuffer());
  expect(performance.now() - t0).toBeGreaterThan(600); // really slower than the per-try timeout
  expect(buf.length).toBe(size);
  let bad = -1;
  for (let i = 0; i < size; i++)
    if (buf[i] !== patternByte(i)) {
      bad = i;
      break;
    }
  expect(bad).toBe(-1);
  expect(up.count).toBe(1);
});

test("reset before headers: GET retried elsewhere, POST answered 502", async () => {
  const reset = track(resetBeforeHeaders());
  const good = track(statusUpstream([200]));
  const h = await hecate([reset.url, good.url], {}, { circuitBreaker: { enabled: false } });
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(200);
  expect(r.headers.get("x-retry-attempt")).toBe("1");
  // round robin continues with the reset upstream for the next request's first attempt
  const p = await fetch(`${h.url}/x`, { method: "POST", body: "b" });
  const p2 = await fetch(`${h.url}/x`, { method: "POST", body: "b" });
  const statuses = [p.status, p2.status].sort();
  expect(statuses).toEqual([200, 502]);
});

for (const size of [RESPONSE_BUFFER_BYTES + 1, 1_000_000])
  test(`reset mid-body of a larger (streamed) response, ${size} bytes: the client's body fails, nothing is retried`, async () => {
    const up = track(resetMidBody(size, 1000));
    const h = await hecate([up.url]);
    const r = await fetch(`${h.url}/x`);
    expect(r.status).toBe(200);
    let failed = false;
    try {
      const b = await r.arrayBuffer();
      failed = b.byteLength !== size;
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);
    expect(up.count).toBe(1);
  });

test("reset mid-body of a small (buffered) response: 502, never a truncated body, nothing is retried", async () => {
  const up = track(resetMidBody(RESPONSE_BUFFER_BYTES, 1000));
  const h = await hecate([up.url]);
  const r = await fetch(`${h.url}/x`);
  expect(r.status).toBe(502);
  expect(await r.text()).toBe("bad response from upstream\n");
  expect(up.count).toBe(1);
});

test("a client that goes away aborts the upstream request and stops retries", async () => {
  const up = track(slowHeaders(3000));
  // without the abort, the per-try timeout (0.4 s) would retry three times
  const h = await hecate([up.url], {}, { retry: { perTryTimeoutSec: 0.4, maxRetries: 3 } });
  const ac = new AbortController();
  const p = fetch(`${h.url}/x`, { signal: ac.signal }).catch((e) => e);
  await waitFor(() => up.seen.length === 1, 5000, "first attempt");
  ac.abort();
  expect(await p).toBeInstanceOf(Error);
  await waitFor(() => up.aborted === 1, 5000, "upstream request aborted");
  await waitFor(() => h.rt.inflight === 0, 5000, "exchange finished");
  expect(up.seen.length).toBe(1);
});

test("a client that goes away during the backoff stops retries", async () => {
  const up = track(statusUpstream([503], { delayMs: 0 }));
  const h = await hecate([up.url], {}, { retry: { maxRetries: 3, backoffBaseMs: 400, backoffMaxMs: 400 } });
  // full jitter may draw a tiny backoff: repeat until one request was caught in its backoff
  let caught = false;
  for (let k = 0; k < 5 && !caught; k++) {
    const before = up.seen.length;
    const ac = new AbortController();
    const p = fetch(`${h.url}/x`, { signal: ac.signal }).catch((e) => e);
    await waitFor(() => up.seen.length > before, 5000, "first attempt");
    ac.abort();
    await p;
    await waitFor(() => h.rt.inflight === 0, 5000, "exchange finished");
    if (up.seen.length === before + 1) caught = true;
  }
  expect(caught).toBe(true);
});
