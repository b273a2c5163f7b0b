// A collector that refuses every export: requests are still served, and the failure is logged
// once per interval — not once per export, let alone per request. Runs the real CLI in a child
// process to read its log lines on stdout.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUpstream } from "../helpers/hecate.ts";

const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const MAIN = join(import.meta.dir, "../../src/main.ts");

let exportsSeen = 0;
const collector = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    await req.arrayBuffer();
    exportsSeen++;
    return new Response("collector is broken", { status: 500 });
  },
});
const up = startUpstream();
const dir = mkdtempSync(join(tmpdir(), "hecate-obs-export-"));
const configPath = join(dir, "hecate.yaml");
writeFileSync(
  configPath,
  JSON.stringify({
    admin: { listen: "127.0.0.1:0" },
    proxy: { listen: "127.0.0.1:0", routes: [{ name: "r", upstreams: [up.url] }] },
    telemetry: { otlpEndpoint: `http://127.0.0.1:${collector.port}/v1/traces`, sampling: 1, accessLog: false, logLevel: "info" },
  }),
);

const proc = Bun.spawn([BUN, MAIN, `-config=${configPath}`], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
const lines: any[] = [];
const reading = (async () => {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ raw: line });
      }
    }
  }
})();

afterAll(async () => {
  if (proc.exitCode === null) proc.kill("SIGKILL");
  await proc.exited;
  collector.stop(true);
  up.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function until<T>(f: () => T | undefined, ms: number, what: string): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}; log: ${JSON.stringify(lines)}`);
    await Bun.sleep(20);
  }
}

test("export failures are logged once per interval while requests keep being served", async () => {
  const listening = await until(() => lines.find((l) => l.msg === "listening" && l.listener === "public"), 10_000, "the public listener");
  const url = `http://${listening.address}`;
  const on = await until(() => lines.find((l) => l.msg === "tracing on"), 10_000, "tracing on");
  expect(on).toMatchObject({ protocol: "http/protobuf", sampling: 1 });

  // three rounds of traffic, each waiting for its own (failed) export batch
  for (let round = 1; round <= 3; round++) {
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${url}/x${i}`);
      expect(r.status).toBe(200);
      await r.text();
    }
    await until(() => exportsSeen >= round || undefined, 10_000, `export #${round}`);
  }
  await Bun.sleep(0);
  const failures = lines.filter((l) => l.msg === "trace export failed");
  expect(failures.length).toBe(1);
  expect(failures[0]).toMatchObject({ level: "warn", endpoint: `http://127.0.0.1:${collector.port}/v1/traces`, protocol: "http/protobuf", failedExports: 1 });

  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
  await reading;
  expect(lines.some((l) => l.msg === "stopped")).toBe(true);
  expect(lines.filter((l) => l.msg === "trace export failed").length).toBe(1);
}, 40_000);
