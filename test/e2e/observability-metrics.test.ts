// GET /metrics end to end (SPEC §5): values change as real requests flow through Hecate.
// Counters are process-wide, so every check compares two scrapes (deltas), and the route
// names are unique to this file.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import { AggregatorRegistry } from "prom-client";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { parseExposition, scrape, valueOf, type Sample } from "../observability/prom-text.ts";
import { METRIC_NAMES, DURATION_BUCKETS, metricsJson } from "../../src/observability/metrics.ts";

const up = startUpstream();
const bad = startUpstream(() => new Response("busy", { status: 503 }));
/** Requests waiting in the slow upstream; release() lets them all answer. */
const waiting: (() => void)[] = [];
const release = () => waiting.splice(0).forEach((r) => r());
const slow = startUpstream(async () => {
  await new Promise<void>((r) => waiting.push(r));
  return new Response("late");
});
const DEAD = "http://127.0.0.1:1";
const origin = (u: { port: number }) => `http://127.0.0.1:${u.port}`;

const dir = mkdtempSync(join(tmpdir(), "hecate-obs-metrics-"));
const configPath = join(dir, "hecate.yaml");
const config = {
  admin: { listen: "127.0.0.1:0" },
  proxy: {
    listen: "127.0.0.1:0",
    circuitBreaker: { openAfterConsecutiveFailures: 2, cooldownSec: 600 },
    routes: [
      { name: "obsm_api", pathPrefix: "/api", upstreams: [up.url] },
      { name: "obsm_retry", pathPrefix: "/retry", upstreams: [bad.url, up.url], retry: { backoffBaseMs: 1, backoffMaxMs: 1 } },
      { name: "obsm_dead", pathPrefix: "/dead", upstreams: [DEAD], retry: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 1 } },
      { name: "obsm_slow", pathPrefix: "/slow", upstreams: [slow.url], retry: { maxRetries: 0, perTryTimeoutSec: 0.2 } },
      { name: "obsm_hold", pathPrefix: "/hold", upstreams: [slow.url], retry: { maxRetries: 0, perTryTimeoutSec: 0 } },
      { name: "obsm_auth", pathPrefix: "/auth", upstreams: [up.url], auth: { bearerToken: "let-me-in" } },
      { name: "obsm_acl", pathPrefix: "/acl", upstreams: [up.url], policy: { ipAcl: { denyCidrs: ["127.0.0.1/32"] } } },
      { name: "obsm_rl", pathPrefix: "/rl", upstreams: [up.url], policy: { rateLimit: { rps: 0.001, burst: 1 } } },
    ],
  },
  telemetry: { accessLog: false, logLevel: "error" },
};
writeFileSync(configPath, JSON.stringify(config));
const h = await startHecate(config, { configPath });

afterAll(async () => {
  release();
  await h.shutdown();
  up.stop();
  bad.stop();
  slow.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function get(path: string, init?: RequestInit): Promise<number> {
  const r = await fetch(h.url + path, init);
  await r.arrayBuffer();
  return r.status;
}
const metrics = () => scrape(h.adminUrl);
const delta = (a: Sample[], b: Sample[], name: string, labels: Record<string, string> = {}) => valueOf(b, name, labels) - valueOf(a, name, labels);

async function until(pred: () => Promise<boolean>, ms = 3000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`condition not met in time (inflight ${h.rt.inflight}, slow upstream saw ${slow.seen.length})`);
    await Bun.sleep(10);
  }
}

test("the exposition: Prometheus text, every Hecate metric with HELP and TYPE, process metrics", async () => {
  await get("/api/warm");
  const r = await fetch(`${h.adminUrl}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  const { samples, types, help } = parseExposition(await r.text());
  const expectType: Record<string, string> = {
    hecate_requests_total: "counter",
    hecate_request_duration_seconds: "histogram",
    hecate_upstream_requests_total: "counter",
    hecate_upstream_duration_seconds: "histogram",
    hecate_retries_total: "counter",
    hecate_upstream_healthy: "gauge",
    hecate_circuit_breaker_state: "gauge",
    hecate_policy_denied_total: "counter",
    hecate_inflight_requests: "gauge",
    hecate_draining: "gauge",
    hecate_config_reloads_total: "counter",
    hecate_config_generation: "gauge",
  };
  expect([...METRIC_NAMES].sort()).toEqual(Object.keys(expectType).sort());
  for (const [name, type] of Object.entries(expectType)) {
    expect(types.get(name)).toBe(type);
    expect(help.get(name)?.length).toBeGreaterThan(10);
  }
  for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_heap_size_used_bytes"])
    expect(samples.some((s) => s.name === name)).toBe(true);
  // the buckets run from 0.5 ms to 30 s
  const les = samples.filter((s) => s.name === "hecate_request_duration_seconds_bucket" && s.labels.route === "obsm_api" && s.labels.method === "GET").map((s) => s.labels.le);
  expect(les).toEqual([...DURATION_BUCKETS.map(String), "+Inf"]);
  expect(DURATION_BUCKETS[0]).toBe(0.0005);
  expect(DURATION_BUCKETS.at(-1)).toBe(30);
});

test("requests are counted by route, method and code; the histogram counts every request", async () => {
  const a = await metrics();
  for (let i = 0; i < 5; i++) expect(await get(`/api/a${i}`)).toBe(200);
  for (let i = 0; i < 3; i++) expect(await get("/api/b", { method: "POST", body: "x" })).toBe(200);
  expect(await get("/api/c", { method: "PATCH", body: "y" })).toBe(200);
  expect(await get("/nope")).toBe(404);
  expect(await get("/nope/again")).toBe(404);
  const b = await metrics();

  expect(delta(a, b, "hecate_requests_total", { route: "obsm_api", method: "GET", code: "200" })).toBe(5);
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_api", method: "POST", code: "200" })).toBe(3);
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_api", method: "PATCH", code: "200" })).toBe(1);
  expect(delta(a, b, "hecate_requests_total", { route: "", method: "GET", code: "404" })).toBe(2);

  const get200 = { route: "obsm_api", method: "GET" };
  expect(delta(a, b, "hecate_request_duration_seconds_count", get200)).toBe(5);
  expect(delta(a, b, "hecate_request_duration_seconds_bucket", { ...get200, le: "+Inf" })).toBe(5);
  expect(delta(a, b, "hecate_request_duration_seconds_sum", get200)).toBeGreaterThan(0);
  expect(delta(a, b, "hecate_request_duration_seconds_count", { route: "obsm_api", method: "POST" })).toBe(3);
  expect(delta(a, b, "hecate_request_duration_seconds_count", { route: "", method: "GET" })).toBe(2);
  // buckets are cumulative
  const buckets = b.filter((s) => s.name === "hecate_request_duration_seconds_bucket" && s.labels.route === "obsm_api" && s.labels.method === "GET").map((s) => s.value);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!);

  expect(delta(a, b, "hecate_upstream_requests_total", { route: "obsm_api", upstream: origin(up), outcome: "ok" })).toBe(9);
  expect(delta(a, b, "hecate_upstream_duration_seconds_count", { upstream: origin(up) })).toBe(9);
});

test("retries, upstream outcomes and circuit breaker state", async () => {
  const a = await metrics();
  expect(await get("/retry/x")).toBe(200); // bad answers 503, the retry goes to up
  expect(await get("/dead")).toBe(502); // two connect errors: the breaker (threshold 2) opens
  expect(await get("/slow/x")).toBe(504); // per-try timeout
  release();
  const b = await metrics();

  expect(delta(a, b, "hecate_retries_total", { route: "obsm_retry", reason: "status_5xx" })).toBe(1);
  expect(delta(a, b, "hecate_upstream_requests_total", { route: "obsm_retry", upstream: origin(bad), outcome: "http_5xx" })).toBe(1);
  expect(delta(a, b, "hecate_upstream_requests_total", { route: "obsm_retry", upstream: origin(up), outcome: "ok" })).toBe(1);
  expect(delta(a, b, "hecate_retries_total", { route: "obsm_dead", reason: "connect_error" })).toBe(1);
  expect(delta(a, b, "hecate_upstream_requests_total", { route: "obsm_dead", upstream: DEAD, outcome: "connect_error" })).toBe(2);
  expect(delta(a, b, "hecate_upstream_requests_total", { route: "obsm_slow", upstream: origin(slow), outcome: "timeout" })).toBe(1);
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_slow", method: "GET", code: "504" })).toBe(1);
  // zero series exist for every route and reason, so rate() has something to work on
  expect(b.some((s) => s.name === "hecate_retries_total" && s.labels.route === "obsm_api" && s.labels.reason === "timeout" && s.value === 0)).toBe(true);

  expect(valueOf(b, "hecate_circuit_breaker_state", { upstream: DEAD })).toBe(2);
  expect(valueOf(b, "hecate_circuit_breaker_state", { upstream: origin(up) })).toBe(0);
  expect(valueOf(b, "hecate_upstream_healthy", { upstream: origin(up) })).toBe(1);
  expect(b.filter((s) => s.name === "hecate_upstream_healthy").map((s) => s.labels.upstream).sort()).toEqual([DEAD, origin(bad), origin(slow), origin(up)].sort());
});

test("policy denials are counted by route and policy", async () => {
  const a = await metrics();
  expect(await get("/auth")).toBe(401);
  expect(await get("/auth", { headers: { authorization: "Bearer let-me-in" } })).toBe(200);
  expect(await get("/acl")).toBe(403);
  expect(await get("/rl")).toBe(200);
  expect(await get("/rl")).toBe(429);
  const b = await metrics();
  expect(delta(a, b, "hecate_policy_denied_total", { route: "obsm_auth", policy: "auth" })).toBe(1);
  expect(delta(a, b, "hecate_policy_denied_total", { route: "obsm_acl", policy: "ip_acl" })).toBe(1);
  expect(delta(a, b, "hecate_policy_denied_total", { route: "obsm_rl", policy: "rate_limit" })).toBe(1);
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_rl", method: "GET", code: "429" })).toBe(1);
});

test("live gauges: in-flight requests and draining", async () => {
  const pending = fetch(`${h.url}/hold/x`).then(async (r) => (await r.text(), r.status));
  await until(async () => valueOf(await metrics(), "hecate_inflight_requests") === 1);
  await until(async () => slow.seen.some((r) => r.path === "/hold/x") && waiting.length > 0);
  expect(valueOf(await metrics(), "hecate_inflight_requests")).toBe(1);
  release();
  expect(await pending).toBe(200);
  await until(async () => valueOf(await metrics(), "hecate_inflight_requests") === 0);

  expect(valueOf(await metrics(), "hecate_draining")).toBe(0);
  expect((await fetch(`${h.adminUrl}/admin/drain`, { method: "PUT", body: "on" })).status).toBe(200);
  expect(valueOf(await metrics(), "hecate_draining")).toBe(1);
  expect((await fetch(`${h.adminUrl}/admin/drain`, { method: "PUT", body: "off" })).status).toBe(200);
  expect(valueOf(await metrics(), "hecate_draining")).toBe(0);
});

test("reloads are counted by result; the generation gauge follows; counters continue over a reload", async () => {
  const a = await metrics();
  const gen = valueOf(a, "hecate_config_generation");
  expect(gen).toBeGreaterThanOrEqual(1);
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(200);
  expect(await get("/api/after-reload")).toBe(200);
  writeFileSync(configPath, "proxy: [not, a, mapping\n");
  expect((await fetch(`${h.adminUrl}/admin/reload`, { method: "POST" })).status).toBe(400);
  writeFileSync(configPath, JSON.stringify(config));
  const b = await metrics();
  expect(delta(a, b, "hecate_config_reloads_total", { result: "success" })).toBe(1);
  expect(delta(a, b, "hecate_config_reloads_total", { result: "failure" })).toBe(1);
  expect(valueOf(b, "hecate_config_generation")).toBe(gen + 1);
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_api", method: "GET", code: "200" })).toBe(1);
});

test("methods outside the known set are labelled OTHER (CONNECT reaches Hecate and gets 405)", async () => {
  const a = await metrics();
  const status = await new Promise<string>((resolve, reject) => {
    const s = connect(h.listeners.publicServer.port!, "127.0.0.1", () => s.write("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"));
    let buf = "";
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) {
        resolve(buf.slice(0, buf.indexOf("\r\n")));
        s.destroy();
      }
    });
    s.on("error", reject);
  });
  expect(status).toStartWith("HTTP/1.1 405");
  await until(async () => delta(a, await metrics(), "hecate_requests_total", { route: "", method: "OTHER", code: "405" }) === 1);
});

test("1,000 distinct random paths and hosts do not add 1,000 series", async () => {
  // the label sets these requests can produce exist after one of each
  await get("/api/warm", { headers: { host: "warm.example" } });
  await get("/warm-unmatched", { headers: { host: "warm.example" } });
  const before = await fetch(`${h.adminUrl}/metrics`).then((r) => r.text());
  const series = (text: string) => parseExposition(text).samples.filter((s) => s.name.startsWith("hecate_")).length;

  const randoms: string[] = [];
  for (let batch = 0; batch < 20; batch++) {
    const statuses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => {
        const id = crypto.randomUUID();
        randoms.push(id);
        return get((batch * 50 + i) % 2 === 0 ? `/api/${id}` : `/${id}`, { headers: { host: `${id}.example` } });
      }),
    );
    for (const s of statuses) expect([200, 404]).toContain(s);
  }
  const after = await fetch(`${h.adminUrl}/metrics`).then((r) => r.text());
  expect(series(after)).toBe(series(before));
  const b = parseExposition(after).samples;
  const a = parseExposition(before).samples;
  expect(delta(a, b, "hecate_requests_total", { route: "obsm_api", method: "GET", code: "200" })).toBe(500);
  expect(delta(a, b, "hecate_requests_total", { route: "", method: "GET", code: "404" })).toBe(500);
  for (const id of randoms.slice(0, 50)) expect(after.includes(id)).toBe(false);
}, 30_000);

test("per-worker registries merge into one exposition (AggregatorRegistry)", async () => {
  // what each worker would send: its registry as prom-client JSON
  const w1 = await metricsJson(h.rt);
  const w2 = await metricsJson(h.rt);
  const merged = parseExposition(await AggregatorRegistry.aggregate([w1, w2]).metrics()).samples;
  const one = parseExposition(await (await fetch(`${h.adminUrl}/metrics`)).text()).samples;
  const key = { route: "obsm_api", method: "GET", code: "200" };
  expect(valueOf(merged, "hecate_requests_total", key)).toBe(2 * valueOf(one, "hecate_requests_total", key));
  const hist = { route: "obsm_api", method: "GET" };
  expect(valueOf(merged, "hecate_request_duration_seconds_count", hist)).toBe(2 * valueOf(one, "hecate_request_duration_seconds_count", hist));
  expect(valueOf(merged, "hecate_request_duration_seconds_bucket", { ...hist, le: "+Inf" })).toBe(2 * valueOf(one, "hecate_request_duration_seconds_bucket", { ...hist, le: "+Inf" }));
  // shared state is not doubled: health, breaker, generation
  expect(valueOf(merged, "hecate_upstream_healthy", { upstream: origin(up) })).toBe(1);
  expect(valueOf(merged, "hecate_circuit_breaker_state", { upstream: DEAD })).toBe(2);
  expect(valueOf(merged, "hecate_config_generation")).toBe(valueOf(one, "hecate_config_generation"));
});
