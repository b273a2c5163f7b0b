// Traces end to end (SPEC §5, §2.6, §3.6): real OTLP receivers (HTTP/protobuf on Bun.serve and
// gRPC on @grpc/grpc-js) decode what Hecate exports; upstream fixtures record the traceparent
// they receive.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream, type Hecate } from "../helpers/hecate.ts";
import { startHttpReceiver, startGrpcReceiver, type ReceivedSpan } from "../observability/otlp-receiver.ts";
import { hooks } from "../../src/pipeline/hooks.ts";

// trace ids the access log would print, by request id (observed on the finish hook)
const traceIds = new Map<string, string>();
const prevFinish = hooks.finish;
hooks.finish = (ex, ms) => {
  prevFinish(ex, ms);
  traceIds.set(ex.requestId, ex.traceId);
};

const httpRcv = startHttpReceiver();
const grpcRcv = await startGrpcReceiver();
const sampledOffRcv = startHttpReceiver();
const up = startUpstream();
const bad = startUpstream(() => new Response("busy", { status: 503 }));

const started: Hecate[] = [];
async function hecate(config: Record<string, any>): Promise<Hecate> {
  const h = await startHecate(config);
  started.push(h);
  return h;
}

const viaHttp = await hecate({
  proxy: {
    routes: [
      { name: "traced", pathPrefix: "/t", upstreams: [up.url] },
      { name: "retried", pathPrefix: "/r", upstreams: [bad.url, up.url], retry: { backoffBaseMs: 1, backoffMaxMs: 1 } },
      { name: "down", pathPrefix: "/d", upstreams: ["http://127.0.0.1:1"], retry: { maxRetries: 0 } },
    ],
  },
  telemetry: { otlpEndpoint: `http://${httpRcv.address}/v1/traces`, sampling: 1, serviceName: "hecate-e2e", headers: { "x-otlp-token": "s3cret" } },
});
const viaGrpc = await hecate({
  proxy: { routes: [{ name: "g", upstreams: [up.url] }] },
  telemetry: { otlpEndpoint: grpcRcv.address, insecure: true, sampling: 1, headers: { "x-otlp-token": "grpc-secret" } },
});
const sampledOff = await hecate({
  proxy: { routes: [{ name: "s", upstreams: [up.url] }] },
  telemetry: { otlpEndpoint: `http://${sampledOffRcv.address}/v1/traces`, sampling: 0 },
});
const off = await hecate({ proxy: { routes: [{ name: "off", upstreams: [up.url] }] } });

afterAll(async () => {
  for (const h of started) await h.shutdown();
  up.stop();
  bad.stop();
  await Promise.all([httpRcv.stop(), grpcRcv.stop(), sampledOffRcv.stop()]);
});

const hex = (n: number) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0")).join("");
/** A fresh incoming traceparent. */
function incoming(sampled = true) {
  const traceId = hex(16);
  const parentId = hex(8);
  return { traceId, parentId, traceparent: `00-${traceId}-${parentId}-${sampled ? "01" : "00"}` };
}
/** [version, traceId, parentId, flags] of a traceparent value. */
function parseTp(v: string | undefined) {
  expect(v).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  const [, traceId, parentId, flags] = v!.split("-");
  return { traceId: traceId!, parentId: parentId!, flags: flags! };
}
const ofTrace = (spans: ReceivedSpan[], traceId: string) => spans.filter((s) => s.traceId === traceId);
function lastSeenBy(u: { seen: { path: string; headers: Record<string, string> }[] }, path: string) {
  const s = u.seen.filter((x) => x.path === path).at(-1);
  expect(s).toBeDefined();
  return s!.headers;
}

test("SERVER and CLIENT spans continue the incoming trace; the upstream gets the CLIENT span as parent (OTLP/HTTP)", async () => {
  const t = incoming();
  const r = await fetch(`${viaHttp.url}/t/hello?q=1`, { headers: { traceparent: t.traceparent, tracestate: "vendor=abc", "user-agent": "obs-test/1" } });
  expect(r.status).toBe(200);
  await r.text();

  const sent = lastSeenBy(up, "/t/hello?q=1");
  const tp = parseTp(sent.traceparent);
  expect(tp.traceId).toBe(t.traceId);
  expect(tp.parentId).not.toBe(t.parentId);
  expect(tp.flags).toBe("01");
  expect(sent.tracestate).toBe("vendor=abc");

  const spans = ofTrace(await httpRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 2), t.traceId);
  const server = spans.find((s) => s.kind === "SERVER")!;
  const client = spans.find((s) => s.kind === "CLIENT")!;
  expect(server).toBeDefined();
  expect(client).toBeDefined();
  expect(spans.length).toBe(2);

  expect(server.name).toBe("GET traced");
  expect(server.parentSpanId).toBe(t.parentId);
  expect(server.status.code).toBe("UNSET");
  expect(server.attributes).toMatchObject({
    "http.request.method": "GET",
    "url.path": "/t/hello",
    "url.scheme": "http",
    "http.route": "traced",
    "http.response.status_code": 200,
    "server.address": "127.0.0.1",
    "network.peer.address": "127.0.0.1",
    "user_agent.original": "obs-test/1",
    "hecate.request_id": r.headers.get("x-request-id")!,
  });
  expect(server.resource["service.name"]).toBe("hecate-e2e");

  expect(client.name).toBe("GET");
  expect(client.parentSpanId).toBe(server.spanId);
  expect(client.spanId).toBe(tp.parentId);
  expect(client.traceState).toBe("vendor=abc");
  expect(client.attributes).toMatchObject({
    "http.request.method": "GET",
    "server.address": "127.0.0.1",
    "server.port": up.port,
    "url.full": `${up.url}/t/hello?q=1`,
    "http.response.status_code": 200,
  });
  expect(client.attributes["http.request.resend_count"]).toBeUndefined();
  expect(client.status.code).toBe("UNSET");

  // the exporter sends the configured headers; the access log gets the trace id
  expect(httpRcv.lastHeaders["x-otlp-token"]).toBe("s3cret");
  expect(httpRcv.lastHeaders["content-type"]).toBe("application/x-protobuf");
  expect(traceIds.get(r.headers.get("x-request-id")!)).toBe(t.traceId);
}, 20_000);

test("a retried request has one CLIENT span per attempt, with http.request.resend_count", async () => {
  const t = incoming();
  const r = await fetch(`${viaHttp.url}/r/x`, { headers: { traceparent: t.traceparent } });
  expect(r.status).toBe(200);
  await r.text();
  const spans = ofTrace(await httpRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 3), t.traceId);
  const server = spans.find((s) => s.kind === "SERVER")!;
  const clients = spans.filter((s) => s.kind === "CLIENT");
  expect(clients.length).toBe(2);
  const first = clients.find((c) => c.attributes["http.request.resend_count"] === undefined)!;
  const second = clients.find((c) => c.attributes["http.request.resend_count"] === 1)!;
  expect(first.parentSpanId).toBe(server.spanId);
  expect(second.parentSpanId).toBe(server.spanId);
  expect(first.attributes["http.response.status_code"]).toBe(503);
  expect(first.attributes["error.type"]).toBe("503");
  expect(first.status.code).toBe("ERROR");
  expect(second.attributes["http.response.status_code"]).toBe(200);
  expect(second.status.code).toBe("UNSET");
  expect(server.name).toBe("GET retried");
  expect(server.status.code).toBe("UNSET");
  expect(server.attributes["hecate.attempts"]).toBe(2);
  // each upstream saw its own attempt's span as parent
  expect(parseTp(lastSeenBy(bad, "/r/x").traceparent).parentId).toBe(first.spanId);
  expect(parseTp(lastSeenBy(up, "/r/x").traceparent).parentId).toBe(second.spanId);
}, 20_000);

test("no route: a SERVER span named by the method alone, no CLIENT span", async () => {
  const t = incoming();
  const r = await fetch(`${viaHttp.url}/nowhere`, { method: "DELETE", headers: { traceparent: t.traceparent } });
  expect(r.status).toBe(404);
  await r.text();
  const spans = ofTrace(await httpRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 1), t.traceId);
  expect(spans.length).toBe(1);
  expect(spans[0]!.kind).toBe("SERVER");
  expect(spans[0]!.name).toBe("DELETE");
  expect(spans[0]!.attributes["http.route"]).toBeUndefined();
  expect(spans[0]!.attributes["http.response.status_code"]).toBe(404);
  expect(spans[0]!.status.code).toBe("UNSET");
}, 20_000);

test("an unreachable upstream: 502, both spans have status ERROR", async () => {
  const t = incoming();
  const r = await fetch(`${viaHttp.url}/d`, { headers: { traceparent: t.traceparent } });
  expect(r.status).toBe(502);
  await r.text();
  const spans = ofTrace(await httpRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 2), t.traceId);
  const server = spans.find((s) => s.kind === "SERVER")!;
  const client = spans.find((s) => s.kind === "CLIENT")!;
  expect(client.status.code).toBe("ERROR");
  expect(client.attributes["error.type"]).toBe("connect_error");
  expect(client.attributes["http.response.status_code"]).toBeUndefined();
  expect(server.status.code).toBe("ERROR");
  expect(server.attributes["http.response.status_code"]).toBe(502);
  expect(server.attributes["error.type"]).toBe("502");
}, 20_000);

test("without a traceparent a new trace starts at the SERVER span", async () => {
  const r = await fetch(`${viaHttp.url}/t/new`);
  expect(r.status).toBe(200);
  await r.text();
  const tp = parseTp(lastSeenBy(up, "/t/new").traceparent);
  const spans = ofTrace(await httpRcv.waitFor((s) => ofTrace(s, tp.traceId).length >= 2), tp.traceId);
  const server = spans.find((s) => s.kind === "SERVER")!;
  const client = spans.find((s) => s.kind === "CLIENT")!;
  expect(server.parentSpanId).toBe("");
  expect(client.spanId).toBe(tp.parentId);
  expect(traceIds.get(r.headers.get("x-request-id")!)).toBe(tp.traceId);
}, 20_000);

test("an invalid traceparent is replaced by a new trace and its tracestate is not forwarded", async () => {
  const r = await fetch(`${viaHttp.url}/t/invalid`, { headers: { traceparent: "00-zzzz-not-valid", tracestate: "stale=1" } });
  expect(r.status).toBe(200);
  await r.text();
  const sent = lastSeenBy(up, "/t/invalid");
  const tp = parseTp(sent.traceparent);
  expect(sent.tracestate).toBeUndefined();
  await httpRcv.waitFor((s) => ofTrace(s, tp.traceId).length >= 2);
}, 20_000);

test("OTLP/gRPC export: SERVER and CLIENT spans with the incoming trace id, metadata sent", async () => {
  const t = incoming();
  const r = await fetch(`${viaGrpc.url}/grpc-path`, { headers: { traceparent: t.traceparent } });
  expect(r.status).toBe(200);
  await r.text();
  const tp = parseTp(lastSeenBy(up, "/grpc-path").traceparent);
  expect(tp.traceId).toBe(t.traceId);
  const spans = ofTrace(await grpcRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 2), t.traceId);
  const server = spans.find((s) => s.kind === "SERVER")!;
  const client = spans.find((s) => s.kind === "CLIENT")!;
  expect(server.name).toBe("GET g");
  expect(server.parentSpanId).toBe(t.parentId);
  expect(client.parentSpanId).toBe(server.spanId);
  expect(client.spanId).toBe(tp.parentId);
  expect(grpcRcv.lastHeaders["x-otlp-token"]).toBe("grpc-secret");
  expect(server.resource["service.name"]).toBe("hecate");
}, 20_000);

test("sampling 0: a sampled parent is still followed, an unsampled root is not exported", async () => {
  // unsampled root: the upstream still gets a (not sampled) traceparent; nothing is exported
  const r1 = await fetch(`${sampledOff.url}/root`);
  await r1.text();
  const root = parseTp(lastSeenBy(up, "/root").traceparent);
  expect(root.flags).toBe("00");
  expect(traceIds.get(r1.headers.get("x-request-id")!)).toBe("");

  // an incoming unsampled parent: not exported, but the access log keeps the caller's trace id
  const u = incoming(false);
  const r2 = await fetch(`${sampledOff.url}/unsampled`, { headers: { traceparent: u.traceparent } });
  await r2.text();
  const un = parseTp(lastSeenBy(up, "/unsampled").traceparent);
  expect(un.traceId).toBe(u.traceId);
  expect(un.flags).toBe("00");
  expect(traceIds.get(r2.headers.get("x-request-id")!)).toBe(u.traceId);

  // a sampled parent: parent-based sampling exports it
  const t = incoming(true);
  const r3 = await fetch(`${sampledOff.url}/sampled`, { headers: { traceparent: t.traceparent } });
  await r3.text();
  expect(parseTp(lastSeenBy(up, "/sampled").traceparent).flags).toBe("01");
  const spans = await sampledOffRcv.waitFor((s) => ofTrace(s, t.traceId).length >= 2);
  // spans are exported in the order they end: the earlier requests would be here by now
  expect(ofTrace(spans, root.traceId)).toEqual([]);
  expect(ofTrace(spans, u.traceId)).toEqual([]);
}, 20_000);

test("tracing off: traceparent and tracestate pass through untouched", async () => {
  const t = incoming();
  const r = await fetch(`${off.url}/passthrough`, { headers: { traceparent: t.traceparent, tracestate: "k=v" } });
  expect(r.status).toBe(200);
  await r.text();
  const sent = lastSeenBy(up, "/passthrough");
  expect(sent.traceparent).toBe(t.traceparent);
  expect(sent.tracestate).toBe("k=v");
  expect(traceIds.get(r.headers.get("x-request-id")!)).toBe("");
});

test("shutdown exports the spans still queued", async () => {
  const rcv = startHttpReceiver();
  try {
    const h = await startHecate({
      proxy: { routes: [{ name: "flush", upstreams: [up.url] }] },
      telemetry: { otlpEndpoint: `http://${rcv.address}/v1/traces`, sampling: 1 },
    });
    const t = incoming();
    const r = await fetch(`${h.url}/flush`, { headers: { traceparent: t.traceparent } });
    await r.text();
    // the batch delay (1 s) has not passed yet: the spans are still queued, shutdown sends them
    await h.shutdown();
    expect(ofTrace(rcv.spans, t.traceId).map((s) => s.kind).sort()).toEqual(["CLIENT", "SERVER"]);
  } finally {
    await rcv.stop();
  }
}, 20_000);

test("a reload changes the sampling ratio", async () => {
  const rcv = startHttpReceiver();
  const dir = mkdtempSync(join(tmpdir(), "hecate-obs-sampling-"));
  const configPath = join(dir, "hecate.yaml");
  const config = (sampling: number) => ({
    admin: { listen: "127.0.0.1:0" },
    proxy: { listen: "127.0.0.1:0", routes: [{ name: "ratio", upstreams: [up.url] }] },
    telemetry: { otlpEndpoint: `http://${rcv.address}/v1/traces`, sampling, accessLog: false, logLevel: "warn" },
  });
  writeFileSync(configPath, JSON.stringify(config(0)));
  const h = await startHecate(config(0), { configPath });
  try {
    await (await fetch(`${h.url}/before`)).text();
    expect(parseTp(lastSeenBy(up, "/before").traceparent).flags).toBe("00");
    writeFileSync(configPath, JSON.stringify(config(1)));
    expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
    await (await fetch(`${h.url}/after`)).text();
    const tp = parseTp(lastSeenBy(up, "/after").traceparent);
    expect(tp.flags).toBe("01");
    await rcv.waitFor((s) => ofTrace(s, tp.traceId).length >= 2);
  } finally {
    await h.shutdown();
    await rcv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 20_000);
