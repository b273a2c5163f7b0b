// The lifecycle log lines of SPEC §5 for resilience: breaker opened / half-open / closed and
// upstream ejected / restored, read from the stdout of a real `hecate` process.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { statusUpstream, healthUpstream, waitFor } from "../helpers/faults.ts";

const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const MAIN = join(import.meta.dir, "../../src/main.ts");

const dir = mkdtempSync(join(tmpdir(), "hecate-logs-"));
const flaky = statusUpstream([503], { healthPath: "/healthz" });
const probed = healthUpstream();
let proc: ReturnType<typeof Bun.spawn> | null = null;

afterAll(async () => {
  if (proc !== null) {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  flaky.stop();
  probed.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("breaker and health transitions are logged as JSON lines", async () => {
  const file = join(dir, "hecate.yaml");
  writeFileSync(
    file,
    JSON.stringify({
      admin: { listen: "127.0.0.1:0" },
      proxy: {
        listen: "127.0.0.1:0",
        retry: { maxRetries: 0 },
        circuitBreaker: { openAfterConsecutiveFailures: 2, cooldownSec: 0.2, halfOpenMaxRequests: 1 },
        health: { intervalSec: 0.05, failThreshold: 1, successReset: 1 },
        routes: [
          { name: "flaky", pathPrefix: "/flaky", upstreams: [flaky.url] },
          { name: "probed", pathPrefix: "/probed", upstreams: [probed.url] },
        ],
      },
      telemetry: { accessLog: false, logLevel: "info" },
    }),
  );
  const p = Bun.spawn([BUN, MAIN, "-config", file], { stdout: "pipe", stderr: "pipe" });
  proc = p;
  const lines: Record<string, any>[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of p.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {}
      }
    }
  })();
  const has = (msg: string, upstream?: string) => lines.some((l) => l.msg === msg && (upstream === undefined || l.upstream === upstream));
  await waitFor(() => lines.some((l) => l.msg === "listening" && l.listener === "public"), 10000, "listening line");
  const addr = lines.find((l) => l.msg === "listening" && l.listener === "public")!.address as string;
  const base = `http://127.0.0.1:${addr.slice(addr.lastIndexOf(":") + 1)}`;

  // breaker: two failures open it; after the cooldown a successful trial closes it
  for (let i = 0; i < 2; i++) expect((await fetch(`${base}/flaky`)).status).toBe(503);
  await waitFor(() => has("breaker opened", new URL(flaky.url).origin), 3000, "breaker opened");
  expect(lines.find((l) => l.msg === "breaker opened")!.level).toBe("warn");
  flaky.setStatuses([200]);
  const openedAt = Date.parse(lines.find((l) => l.msg === "breaker opened")!.time);
  await waitFor(() => Date.now() > openedAt + 210, 3000, "cooldown over");
  expect((await fetch(`${base}/flaky`)).status).toBe(200);
  await waitFor(() => has("breaker half-open") && has("breaker closed"), 3000, "breaker half-open, closed");

  // health: ejected, then restored
  probed.healthStatus = 500;
  await waitFor(() => has("upstream ejected", probed.url), 3000, "upstream ejected");
  probed.healthStatus = 200;
  await waitFor(() => has("upstream restored", probed.url), 3000, "upstream restored");
  const ejected = lines.find((l) => l.msg === "upstream ejected")!;
  expect(ejected).toMatchObject({ level: "warn", upstream: probed.url, reason: "HTTP 500" });
  expect(typeof ejected.time).toBe("string");
});
