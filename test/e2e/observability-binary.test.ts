// The compiled binary exports traces over gRPC and HTTP too. (otlp-grpc-exporter-base loads
// @grpc/grpc-js through createRequire, which a `bun build --compile` bundle cannot resolve by
// itself: see exposeGrpcToRequire in src/observability/tracing.ts.) It is the shipped binary,
// dist/hecate as `bun run build` makes it: with --splitting, OpenTelemetry and the exporters
// are chunks of their own, loaded when tracing is turned on.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUpstream } from "../helpers/hecate.ts";
import { bin as BIN, ensureBinary } from "../cli/binary.ts";
import { startGrpcReceiver, startHttpReceiver, type Receiver } from "../observability/otlp-receiver.ts";

const dir = mkdtempSync(join(tmpdir(), "hecate-obs-bin-"));
const up = startUpstream();
afterAll(() => {
  up.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the binary is built", () => {
  ensureBinary();
}, 60_000);

async function exportsFromBinary(rcv: Receiver, endpoint: string, name: string): Promise<void> {
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(
    cfg,
    JSON.stringify({
      admin: { listen: "127.0.0.1:0" },
      proxy: { listen: "127.0.0.1:0", routes: [{ name, upstreams: [up.url] }] },
      telemetry: { otlpEndpoint: endpoint, insecure: true, sampling: 1, accessLog: false, logLevel: "info" },
    }),
  );
  const proc = Bun.spawn([BIN, `-config=${cfg}`], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  try {
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    while (!out.includes('"msg":"tracing on"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`binary exited: ${out}`);
      out += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const address = /"listener":"public","address":"([^"]+)"/.exec(out)![1];
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const r = await fetch(`http://${address}/x`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(r.status).toBe(200);
    await r.text();
    const spans = await rcv.waitFor((s) => s.filter((x) => x.traceId === traceId).length >= 2);
    expect(spans.filter((s) => s.traceId === traceId).map((s) => `${s.kind} ${s.name}`).sort()).toEqual(["CLIENT GET", `SERVER GET ${name}`]);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

test("OTLP/gRPC from the binary", async () => {
  const rcv = await startGrpcReceiver();
  try {
    await exportsFromBinary(rcv, rcv.address, "bin_grpc");
  } finally {
    await rcv.stop();
  }
}, 20_000);

test("OTLP/HTTP from the binary", async () => {
  const rcv = startHttpReceiver();
  try {
    await exportsFromBinary(rcv, `http://${rcv.address}/v1/traces`, "bin_http");
  } finally {
    await rcv.stop();
  }
}, 20_000);
