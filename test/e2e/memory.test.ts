// Streaming keeps memory flat: a 1 GiB upload and a 1 GiB download through the compiled
// proxy grow its RSS by less than 64 MiB (SPEC §3.6; sampled from /proc/<pid>/status).
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, startHecateBinary, type RunningHecate } from "../cli/binary.ts";

const GiB = 1024 * 1024 * 1024;
const CHUNK = new Uint8Array(256 * 1024).fill(97);
const LIMIT = 64 * 1024 * 1024;

let received = 0;
const upstream = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  maxRequestBodySize: 2 * GiB,
  idleTimeout: 60,
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/sink") {
      received = 0;
      for await (const c of req.body!) received += c.byteLength;
      return new Response(String(received));
    }
    if (path === "/source") {
      let sent = 0;
      return new Response(
        new ReadableStream<Uint8Array>({
          pull(c) {
            if (sent >= GiB) return c.close();
            c.enqueue(CHUNK);
            sent += CHUNK.byteLength;
          },
        }, { highWaterMark: 0 }),
        { headers: { "content-type": "application/octet-stream" } },
      );
    }
    return new Response("ok");
  },
});

let proxy: RunningHecate;
let base = "";

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** Sample the proxy's RSS every 50 ms while `work` runs; return the peak. */
async function peakDuring(work: () => Promise<void>): Promise<number> {
  const pid = proxy.proc.pid;
  let peak = rss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rss(pid));
}

beforeAll(async () => {
  ensureBinary();
  const dir = mkdtempSync(join(tmpdir(), "hecate-mem-"));
  const cfg = join(dir, "c.yaml");
  writeFileSync(
    cfg,
    `admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  limits: { bodyBytesCap: ${2 * GiB} }
  retry: { perTryTimeoutSec: 0 }
  routes:
    - name: big
      upstreams: ["http://127.0.0.1:${upstream.port}"]
telemetry: { accessLog: false }
`,
  );
  proxy = startHecateBinary([`-config=${cfg}`]);
  base = `http://${await proxy.address("public")}`;
  // warm up: a few ordinary requests and a 16 MiB transfer each way
  for (let i = 0; i < 20; i++) await (await fetch(`${base}/`)).text();
});

afterAll(async () => {
  await proxy?.stop();
  upstream.stop(true);
});

test("1 GiB upload: RSS growth under 64 MiB", async () => {
  const before = rss(proxy.proc.pid);
  const peak = await peakDuring(async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= GiB) return c.close();
        c.enqueue(CHUNK);
        sent += CHUNK.byteLength;
      },
    }, { highWaterMark: 0 });
    const r = await fetch(`${base}/sink`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(r.status).toBe(200);
    expect(Number(await r.text())).toBe(GiB);
  });
  expect(received).toBe(GiB);
  console.log(`upload: RSS before ${(before / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
  expect(peak - before).toBeLessThan(LIMIT);
}, 120_000);

test("1 GiB download: RSS growth under 64 MiB", async () => {
  const before = rss(proxy.proc.pid);
  let got = 0;
  const peak = await peakDuring(async () => {
    const r = await fetch(`${base}/source`);
    expect(r.status).toBe(200);
    for await (const c of r.body!) got += c.byteLength;
  });
  expect(got).toBe(GiB);
  console.log(`download: RSS before ${(before / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
  expect(peak - before).toBeLessThan(LIMIT);
}, 120_000);
