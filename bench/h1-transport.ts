// Client-side cost of the upstream transports: H1Transport (pooled HTTP/1.1 on Bun.connect)
// against FetchTransport, each sending GET requests to a Bun.serve upstream in a child process
// and reading the whole body. Prints requests/s and CPU µs per request of this process (the
// client side only: the upstream's CPU is not counted).
//
//   bun bench/h1-transport.ts                 # N=40000 CONC=16 SIZE=1024 ROUNDS=3
//   N=20000 CONC=128 SIZE=65536 bun bench/h1-transport.ts
//
// Measured 2026-11-25 on the 2-core VM (1 KiB, 16 concurrent): H1Transport 12–15 µs/request,
// FetchTransport 28–29 µs/request; the GET-only `tcp` variant of ../shared/bench/bun-variants.ts,
// measured the same way, 18–20 µs/request.
import { H1Transport } from "../src/upstream/h1/transport.ts";
import { FetchTransport } from "../src/upstream/fetch-transport.ts";
import { parseUpstreamUrl, type UpstreamTarget } from "../src/upstream/target.ts";
import type { UpstreamTransport } from "../src/upstream/transport.ts";

const N = Number(process.env.N ?? 40_000);
const CONC = Number(process.env.CONC ?? 16);
const SIZE = Number(process.env.SIZE ?? 1024);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const child = Bun.spawn(
  [process.execPath, "-e", `const b = new Uint8Array(${SIZE}).fill(97); const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(b) }); console.log(s.port);`],
  { stdout: "pipe", stderr: "inherit" },
);
const port = Number(new TextDecoder().decode((await child.stdout.getReader().read()).value).trim());
const url = `http://127.0.0.1:${port}`;
const target: UpstreamTarget = { url, ...parseUpstreamUrl(url), weight: 1, stickyId: "0", index: 0, state: {} as never };
const signal = new AbortController().signal;
// roughly what forward.ts sends
const headers = ["user-agent", "wrk", "accept", "*/*", "x-forwarded-for", "127.0.0.1", "x-forwarded-proto", "http", "x-forwarded-host", "bench.local", "x-request-id", "0192f0a0-1111-7222-8333-444455556666", "via", "1.1 hecate", "x-hecate-retry-attempt", "0"];

async function run(name: string, t: UpstreamTransport): Promise<void> {
  let started = 0;
  const worker = async () => {
    while (started < N) {
      started++;
      const r = await t.send({ method: "GET", target, path: "/", host: "bench.local", headers, body: null, signal, connectTimeoutMs: 5000 });
      if (r.body !== null) for await (const _ of r.body);
    }
  };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONC }, worker));
  const el = performance.now() - t0;
  const c = process.cpuUsage(c0);
  console.log(`${name.padEnd(6)} ${((N / el) * 1000).toFixed(0).padStart(7)} req/s  ${((c.user + c.system) / N).toFixed(1).padStart(5)} µs CPU/request`);
  t.close();
}

console.log(`N=${N} CONC=${CONC} SIZE=${SIZE}`);
for (let i = 0; i < ROUNDS; i++) {
  await run("h1", new H1Transport());
  await run("fetch", new FetchTransport());
}
child.kill();
