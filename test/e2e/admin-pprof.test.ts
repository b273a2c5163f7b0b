// /debug/pprof/profile and /debug/pprof/heap produce real profiles of this process.
import { test, expect, afterAll } from "bun:test";
import { startHecate, startUpstream, oneRoute } from "../helpers/hecate.ts";

const up = startUpstream(() => new Response("x".repeat(1024)));
const h = await startHecate(oneRoute([up.url]));
afterAll(async () => {
  await h.shutdown();
  up.stop();
});

test("seconds outside 1–60 or not a whole number → 400", async () => {
  for (const s of ["0", "61", "abc", "1.5", "-1", ""]) {
    const r = await fetch(`${h.adminUrl}/debug/pprof/profile?seconds=${s}`);
    expect(r.status).toBe(400);
    await r.text();
  }
});

test("CPU profile of 1 s while load runs: .cpuprofile JSON with samples", async () => {
  let stop = false;
  let sent = 0;
  const load = (async () => {
    while (!stop) {
      await Promise.all(Array.from({ length: 8 }, () => fetch(h.url + "/load").then((r) => r.arrayBuffer())));
      sent += 8;
    }
  })();
  const started = performance.now();
  const profReq = fetch(`${h.adminUrl}/debug/pprof/profile?seconds=1`);
  // only one profile at a time
  await Bun.sleep(50);
  const second = await fetch(`${h.adminUrl}/debug/pprof/profile?seconds=1`);
  expect(second.status).toBe(409);
  const r = await profReq;
  stop = true;
  await load;
  expect(performance.now() - started).toBeGreaterThanOrEqual(950);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("application/json");
  expect(r.headers.get("content-disposition")).toMatch(/\.cpuprofile"$/);
  const p = (await r.json()) as any;
  expect(sent).toBeGreaterThan(0);
  expect(Array.isArray(p.nodes)).toBe(true);
  expect(p.nodes.length).toBeGreaterThan(1);
  expect(p.nodes[0].callFrame.functionName).toBe("(root)");
  expect(p.samples.length).toBeGreaterThan(0);
  expect(p.timeDeltas.length).toBe(p.samples.length);
  expect(typeof p.startTime).toBe("number");
  expect(p.endTime).toBeGreaterThan(p.startTime);
  const ids = new Set(p.nodes.map((n: any) => n.id));
  for (const s of p.samples) expect(ids.has(s)).toBe(true);
  // the proxy's own code shows up in the samples
  const names = new Set<string>(p.nodes.map((n: any) => n.callFrame.url as string));
  expect([...names].some((u) => u.includes("/src/"))).toBe(true);
}, 20_000);

test("a new profile can be taken after the last one ended", async () => {
  const r = await fetch(`${h.adminUrl}/debug/pprof/profile?seconds=1`);
  expect(r.status).toBe(200);
  expect(Object.keys((await r.json()) as object)).toEqual(expect.arrayContaining(["nodes", "samples", "timeDeltas"]));
}, 10_000);

test("heap snapshot: V8 .heapsnapshot JSON", async () => {
  const r = await fetch(`${h.adminUrl}/debug/pprof/heap`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("application/json");
  expect(r.headers.get("content-disposition")).toMatch(/\.heapsnapshot"$/);
  const s = (await r.json()) as any;
  expect(s.snapshot.meta.node_fields).toContain("self_size");
  expect(s.snapshot.node_count).toBeGreaterThan(1000);
  expect(s.nodes.length).toBe(s.snapshot.node_count * s.snapshot.meta.node_fields.length);
  expect(Array.isArray(s.edges)).toBe(true);
  expect(Array.isArray(s.strings)).toBe(true);
}, 20_000);
