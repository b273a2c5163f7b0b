// Health, breaker and worker lifecycle with two workers (SPEC §3.5, §3.10): an upstream ejected
// by the (main thread's) health checks is skipped by both workers; a breaker opened by failures
// that only one worker saw is open in the other; a worker that dies is logged and restarted,
// and the restarted one serves with the shared state as it was.
import { test, expect, beforeAll, afterAll } from "bun:test";
import net from "node:net";
import { startUpstream, type Upstream } from "../helpers/hecate.ts";
import { startWorkers, many, grew, until, type WorkersHecate } from "./workers-helpers.ts";

let healthyA = true;
let a: Upstream; // health-checked, flips
let b: Upstream;
let c: Upstream; // every proxied request fails with 503 (its health check passes)
let d: Upstream;
let hx: WorkersHecate;

beforeAll(async () => {
  a = startUpstream((req) => (new URL(req.url).pathname === "/healthz" ? new Response(null, { status: healthyA ? 200 : 500 }) : new Response("a")));
  b = startUpstream(() => new Response("b"));
  c = startUpstream((req) => (new URL(req.url).pathname === "/healthz" ? new Response("ok") : new Response("down", { status: 503 })));
  d = startUpstream(() => new Response("d"));
  hx = await startWorkers({
    proxy: {
      health: { intervalSec: 0.2, timeoutSec: 1, failThreshold: 1, successReset: 1 },
      retry: { maxRetries: 0 },
      circuitBreaker: { openAfterConsecutiveFailures: 3, cooldownSec: 60 },
      routes: [
        { name: "h", pathPrefix: "/h", upstreams: [a.url, b.url] },
        { name: "br", pathPrefix: "/br", upstreams: [c.url, d.url] },
      ],
    },
  });
});

afterAll(async () => {
  await hx?.stop();
  for (const u of [a, b, c, d]) u?.stop();
});

const proxied = (u: Upstream) => u.seen.filter((s) => s.path !== "/healthz").length;

test("an upstream ejected by the health checks is skipped by both workers, and restored in both", async () => {
  const warm = await many(`${hx.url}/h/x`, 20);
  expect(new Set(warm.map((r) => r.body))).toEqual(new Set(["a", "b"]));
  healthyA = false;
  await hx.h.waitFor((l) => l.msg === "upstream ejected" && l.upstream === a.url, "upstream ejected");
  const seenA = proxied(a);
  const before = await hx.perWorker();
  const res = await many(`${hx.url}/h/x`, 30);
  expect(res.map((r) => `${r.status} ${r.body}`)).toEqual(res.map(() => "200 b"));
  expect(proxied(a)).toBe(seenA);
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  // one prober for the process: the main thread's (an interval of 0.2 s, not one per worker)
  const ups = (await (await fetch(`${hx.adminUrl}/admin/upstreams`)).json()) as any;
  expect(ups.upstreams.find((u: any) => u.url === a.url).healthy).toBe(false);

  healthyA = true;
  await hx.h.waitFor((l) => l.msg === "upstream restored" && l.upstream === a.url, "upstream restored");
  const before2 = await hx.perWorker();
  const res2 = await many(`${hx.url}/h/x`, 30);
  expect(new Set(res2.map((r) => r.body))).toEqual(new Set(["a", "b"]));
  expect(grew(before2, await hx.perWorker()).sort()).toEqual([1, 2]);
});

/** HTTP/1.1 keep-alive requests on ONE connection (so on one worker). */
function oneConnection(host: string, port: number) {
  const sock = net.connect(port, host);
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d as Buffer]);
    waiter?.();
  });
  const ready = new Promise<void>((r) => sock.once("connect", () => r()));
  return {
    async get(path: string): Promise<{ status: number; body: string }> {
      await ready;
      sock.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
      for (;;) {
        const head = buf.indexOf("\r\n\r\n");
        if (head >= 0) {
          const h = buf.subarray(0, head).toString();
          const len = Number(/content-length: *(\d+)/i.exec(h)?.[1] ?? "0");
          if (buf.length >= head + 4 + len) {
            const body = buf.subarray(head + 4, head + 4 + len).toString();
            buf = buf.subarray(head + 4 + len);
            return { status: Number(h.slice(9, 12)), body };
          }
        }
        await new Promise<void>((r) => (waiter = r));
      }
    },
    close: () => sock.destroy(),
  };
}

test("a breaker opened by failures one worker saw is open in the other worker too", async () => {
  const [host, port] = [new URL(hx.url).hostname, Number(new URL(hx.url).port)];
  const conn = oneConnection(host, port);
  const before = await hx.perWorker();
  // round robin over c and d: 10 requests give c its 3 consecutive failures
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) statuses.push((await conn.get("/br/x")).status);
  conn.close();
  expect(statuses.filter((s) => s === 503).length).toBe(3);
  await hx.h.waitFor((l) => l.msg === "breaker opened" && l.upstream === new URL(c.url).origin, "breaker opened");
  // only one worker saw these requests (and the failures)
  const mid = await hx.perWorker();
  expect(grew(before, mid).length).toBe(1);

  const seenC = proxied(c);
  const res = await many(`${hx.url}/br/x`, 40);
  expect(res.map((r) => `${r.status} ${r.body}`)).toEqual(res.map(() => "200 d"));
  expect(proxied(c)).toBe(seenC);
  expect(grew(mid, await hx.perWorker()).sort()).toEqual([1, 2]);
  const ups = (await (await fetch(`${hx.adminUrl}/admin/upstreams`)).json()) as any;
  expect(ups.upstreams.find((u: any) => u.url === c.url).breaker).toBe("open");
  const metrics = await (await fetch(`${hx.adminUrl}/metrics`)).text();
  expect(metrics).toContain(`hecate_circuit_breaker_state{upstream="${new URL(c.url).origin}"} 2`);
  // the transition was made, and logged, once
  expect(hx.h.lines.filter((l) => l.msg === "breaker opened").length).toBe(1);
});

test("a worker that dies is logged and restarted, and serves again with the shared state", async () => {
  const r = await fetch(`${hx.adminUrl}/debug/worker-crash`, { method: "POST", body: "2" });
  expect(await r.json()).toEqual({ crashed: 2 });
  const died = await hx.h.waitFor((l) => l.msg === "worker died" && l.worker === 2, "worker died");
  expect(died.level).toBe("error");
  expect(died.error).toContain("crashed on request");
  const restarted = await hx.h.waitFor((l) => l.msg === "worker restarted" && l.worker === 2, "worker restarted");
  expect(restarted.level).toBe("info");
  const vars = await hx.vars();
  expect(vars.workers.find((w) => w.id === 2)).toMatchObject({ running: true, restarts: 1 });
  // the new worker 2 takes connections again (its count starts from 0) …
  const seenC = proxied(c);
  await until(async () => {
    const res = await many(`${hx.url}/br/x`, 10);
    // … and sees the breaker that was opened before it started
    expect(res.map((x) => `${x.status} ${x.body}`)).toEqual(res.map(() => "200 d"));
    return (await hx.perWorker()).get(2)! > 0 ? true : undefined;
  }, "the restarted worker serving");
  expect(proxied(c)).toBe(seenC);
  expect(hx.h.lines.filter((l) => l.msg === "worker died").length).toBe(1);
});
