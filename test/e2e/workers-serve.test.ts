// proxy.workers (SPEC §2.2, §3.10): two worker threads serve one port; admin actions (drain,
// reload by the admin API and by SIGHUP) reach both; /metrics, /admin/stats and /debug/vars
// count every worker's requests; SIGTERM stops all of them and exits 0.
import { test, expect, beforeAll, afterAll } from "bun:test";
import { startUpstream, type Upstream } from "../helpers/hecate.ts";
import { startWorkers, many, grew, until, type WorkersHecate } from "./workers-helpers.ts";

let a: Upstream;
let b: Upstream;
let hx: WorkersHecate;

const config = (routes: Record<string, any>[]) => ({ proxy: { routes } });
const base = () => [
  { name: "main", pathPrefix: "/", upstreams: [a.url] },
  { name: "old", pathPrefix: "/old", upstreams: [a.url] },
];

beforeAll(async () => {
  a = startUpstream(async (req) => {
    if (new URL(req.url).pathname === "/slow") await Bun.sleep(800);
    return new Response("from a");
  });
  b = startUpstream(() => new Response("from b"));
  hx = await startWorkers(config(base()));
});

afterAll(async () => {
  await hx?.stop();
  a?.stop();
  b?.stop();
});

test("both workers serve the public port", async () => {
  const before = await hx.perWorker();
  expect([...before.keys()].sort()).toEqual([1, 2]);
  const res = await many(`${hx.url}/x`, 40);
  expect(res.every((r) => r.status === 200 && r.body === "from a")).toBe(true);
  const after = await hx.perWorker();
  // 40 new connections, each placed on a worker by the kernel: both get some
  expect(grew(before, after).sort()).toEqual([1, 2]);
  const total = [...after.values()].reduce((x, y) => x + y, 0) - [...before.values()].reduce((x, y) => x + y, 0);
  expect(total).toBe(40);
  const v = await hx.vars();
  expect(v.requests).toBeGreaterThanOrEqual(40);
  expect(v.workers.every((w) => w.running)).toBe(true);
});

test("/metrics and /admin/stats are one exposition for the whole process", async () => {
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/metrics-probe`, 30);
  expect(res.every((r) => r.status === 200)).toBe(true);
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  const text = await (await fetch(`${hx.adminUrl}/metrics`)).text();
  const count = (name: string, labels: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  const served = count("hecate_requests_total", 'route="main",method="GET",code="200"');
  // every request so far went to route "main": the two tests' 70
  expect(served).toBe(70);
  expect(count("hecate_request_duration_seconds_count", 'route="main",method="GET"')).toBe(70);
  // HELP/TYPE once, no duplicate series from the two workers
  expect(text.split("\n").filter((l) => l === "# TYPE hecate_requests_total counter").length).toBe(1);
  expect(text.split("\n").filter((l) => l.startsWith('hecate_requests_total{route="main",method="GET",code="200"}')).length).toBe(1);
  // gauges of live state: one value for the process
  expect(text).toMatch(/\nhecate_config_generation 1\n/);
  expect(text).toMatch(/\nhecate_inflight_requests 0\n/);

  const stats = (await (await fetch(`${hx.adminUrl}/admin/stats`)).json()) as any;
  const main = stats.routes.find((r: any) => r.name === "main");
  expect(main.totals.requests).toBe(70);
  expect(main.windowRequests).toBe(70);
  expect(stats.requests).toBeGreaterThanOrEqual(70);
});

test("drain reaches every worker; undrain too", async () => {
  const on = await fetch(`${hx.adminUrl}/admin/drain`, { method: "PUT", body: "on" });
  expect(await on.json()).toEqual({ draining: true });
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/x`, 30);
  expect(res.every((r) => r.status === 503 && r.body === "server is draining\n")).toBe(true);
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  expect((await fetch(`${hx.adminUrl}/readyz`)).status).toBe(503);

  await fetch(`${hx.adminUrl}/admin/drain`, { method: "PUT", body: "off" });
  const before2 = await hx.perWorker();
  const res2 = await many(`${hx.url}/x`, 30);
  expect(res2.every((r) => r.status === 200)).toBe(true);
  expect(grew(before2, await hx.perWorker()).sort()).toEqual([1, 2]);
});

test("POST /admin/reload changes the routes of every worker before it answers", async () => {
  hx.write(config([...base(), { name: "new", pathPrefix: "/new", upstreams: [b.url] }]));
  const r = await fetch(`${hx.adminUrl}/admin/reload`, { method: "POST" });
  expect(r.status).toBe(200);
  const body = (await r.json()) as any;
  expect(body.generation).toBe(2);
  expect(body.changed.routes.added).toEqual(["new"]);
  // no waiting: when the reload has answered, every worker serves generation 2
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/new/x`, 30);
  expect(res.map((x) => `${x.status} ${x.body}`)).toEqual(res.map(() => "200 from b"));
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  expect((await hx.vars()).generation).toBe(2);
});

test("SIGHUP reloads every worker", async () => {
  // route "old" goes to b now
  hx.write(config([{ name: "main", pathPrefix: "/", upstreams: [a.url] }, { name: "old", pathPrefix: "/old", upstreams: [b.url] }]));
  hx.h.proc.kill("SIGHUP");
  // "reload ok" is logged once every worker serves the new generation
  await hx.h.waitFor((l) => l.msg === "reload ok" && l.generation === 3, "reload ok (generation 3)");
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/old/x`, 30);
  expect(res.map((x) => `${x.status} ${x.body}`)).toEqual(res.map(() => "200 from b"));
  // route "new" is gone in both workers
  const gone = await many(`${hx.url}/new/x`, 20);
  expect(gone.map((x) => `${x.status} ${x.body}`)).toEqual(gone.map(() => "200 from a"));
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
});

test("an invalid reload changes nothing in any worker", async () => {
  hx.write({ proxy: { routes: [{ name: "x", upstreams: [] }] } });
  const r = await fetch(`${hx.adminUrl}/admin/reload`, { method: "POST" });
  expect(r.status).toBe(400);
  expect((await hx.vars()).generation).toBe(3);
  const res = await many(`${hx.url}/old/x`, 20);
  expect(res.every((x) => x.status === 200 && x.body === "from b")).toBe(true);
});

test("SIGTERM: every worker drains, finishes its in-flight requests and stops; the process exits 0", async () => {
  // requests in flight in the workers when the signal comes
  const slow = many(`${hx.url}/slow`, 6, {}, 6);
  const v = await until(async () => {
    const x = await hx.vars();
    return x.inflight === 6 ? x : undefined;
  }, "6 requests in flight");
  expect(v.workers.reduce((n, w) => n + w.inflight, 0)).toBe(6);
  hx.h.proc.kill("SIGTERM");
  const done = await slow;
  expect(done.map((r) => `${r.status} ${r.body}`)).toEqual(done.map(() => "200 from a"));
  const code = await hx.h.exited();
  expect(code).toBe(0);
  expect(hx.h.lines.some((l) => l.msg === "stopped")).toBe(true);
  expect(hx.h.lines.some((l) => l.msg === "worker died")).toBe(false);
});
