// WebSocket proxying (SPEC §3.6) with Bun's WebSocket client and raw sockets: the route's auth
// and rate limit apply to the upgrade; 1,000 messages of mixed sizes and types round-trip in
// order; headers, subprotocol and close codes pass; an upstream refusal keeps its status;
// backpressure holds both ways; a session survives a reload; the metrics hook sees it.
import { test, expect, afterAll } from "bun:test";
import { connect } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerWebSocket } from "bun";
import { startHecate } from "../helpers/hecate.ts";
import { hooks } from "../../src/pipeline/hooks.ts";
import { reload } from "../../src/runtime/reload.ts";

// --- upstream ------------------------------------------------------------------------------
type UpData = { path: string; headers: Record<string, string> };
const upgrades: UpData[] = [];
const upstreamCloses: { code: number; reason: string }[] = [];
const flood = { sent: 0, count: 0, backpressured: false };
let pausedUpstream: ServerWebSocket<UpData> | null = null;
let upstreamReceived = 0;
let drained: (() => void) | null = null;
const CHUNK = new Uint8Array(64 * 1024).fill(1);

const up = Bun.serve<UpData>({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req, server) {
    const url = new URL(req.url);
    const headers = Object.fromEntries(req.headers);
    if (url.pathname.endsWith("/refuse")) return new Response("go away", { status: 403 });
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
    const h: Record<string, string> = {};
    if (offered.includes("chat.v2")) h["sec-websocket-protocol"] = "chat.v2";
    if (server.upgrade(req, { data: { path: url.pathname, headers }, headers: h })) {
      upgrades.push({ path: url.pathname, headers });
      return undefined;
    }
    return new Response("upgrade failed", { status: 400 });
  },
  websocket: {
    backpressureLimit: 256 * 1024 * 1024,
    open(ws) {
      if (ws.data.path.endsWith("/slow")) {
        ws.pause(); // does not read until the test says so
        pausedUpstream = ws;
      }
    },
    message(ws, m) {
      if (ws.data.path.endsWith("/slow")) {
        upstreamReceived += typeof m === "string" ? m.length : m.byteLength;
        return;
      }
      if (m === "close-me") return ws.close(4002, "server bye");
      if (typeof m === "string" && m.startsWith("flood ")) {
        // send `limit` bytes as fast as the proxy takes them: after a -1, wait for drain
        const limit = Number(m.slice(6));
        void (async () => {
          while (flood.sent < limit) {
            const r = ws.send(CHUNK);
            flood.sent += CHUNK.byteLength;
            flood.count++;
            if (r === -1) {
              flood.backpressured = true;
              await new Promise<void>((res) => (drained = res));
            }
          }
        })();
        return;
      }
      ws.send(m);
    },
    drain() {
      drained?.();
      drained = null;
    },
    close(_ws, code, reason) {
      upstreamCloses.push({ code, reason });
    },
  },
});

// --- Hecate --------------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), "hecate-ws-"));
const configPath = join(dir, "hecate.json");
const cfg = (extraRoutes: object[] = []) => ({
  admin: { listen: "127.0.0.1:0" },
  proxy: {
    listen: "127.0.0.1:0",
    routes: [
      { name: "ws", pathPrefix: "/ws", upstreams: [`http://127.0.0.1:${up.port}/base`], auth: { bearerToken: "tok" } },
      { name: "lim", pathPrefix: "/lim", upstreams: [`http://127.0.0.1:${up.port}`], policy: { rateLimit: { rps: 0.001, burst: 1 } } },
      { name: "dead", pathPrefix: "/dead", upstreams: ["http://127.0.0.1:1"], retry: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 1 } },
      ...extraRoutes,
    ],
  },
  telemetry: { accessLog: false, logLevel: "warn" },
});
writeFileSync(configPath, JSON.stringify(cfg()));
const h = await startHecate(cfg(), { configPath });
const port = h.listeners.publicServer.port!;
const AUTH = { authorization: "Bearer tok" };

const events: string[] = [];
const finished: { id: string; status: number; route: string; proto: string; bytes: number }[] = [];
const prevWs = hooks.websocket;
const prevFinish = hooks.finish;
hooks.websocket = (ex, ev) => {
  events.push(`${ev} ${ex.requestId}`);
  prevWs(ex, ev);
};
hooks.finish = (ex, d) => {
  if (ex.status === 101) finished.push({ id: ex.requestId, status: ex.status, route: ex.route!.name, proto: ex.proto, bytes: ex.bytes });
  prevFinish(ex, d);
};

afterAll(async () => {
  hooks.websocket = prevWs;
  hooks.finish = prevFinish;
  await h.shutdown();
  up.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------
async function until(cond: () => boolean, ms = 10_000, every = 2): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(every);
  }
}

function open(path: string, opts: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { ...AUTH, ...opts.headers }, protocols: opts.protocols } as any);
  ws.binaryType = "arraybuffer";
  return new Promise((res, rej) => {
    ws.onopen = () => res(ws);
    ws.onerror = (e) => rej(new Error((e as ErrorEvent).message));
  });
}

/** A raw upgrade request; returns the response head. */
function rawUpgrade(path: string, extra = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () =>
      s.write(`GET ${path} HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`),
    );
    let buf = "";
    s.on("data", (d) => {
      buf += d.toString("latin1");
      if (buf.includes("\r\n\r\n")) {
        s.destroy();
        resolve(buf.slice(0, buf.indexOf("\r\n\r\n")));
      }
    });
    s.on("error", reject);
  });
}

// --- tests ---------------------------------------------------------------------------------
test("the route's auth applies to the upgrade: no credential → 401, upstream not reached", async () => {
  const before = upgrades.length;
  const head = await rawUpgrade("/ws/echo");
  expect(head).toStartWith("HTTP/1.1 401");
  expect(head.toLowerCase()).toContain('www-authenticate: bearer realm="hecate"');
  expect(upgrades.length).toBe(before);
});

test("1,000 messages of mixed sizes, text and binary, round-trip in order", async () => {
  const ws = await open("/ws/echo", { headers: { host: "chat.example:8080", "x-custom": "yes" }, protocols: ["chat.v1", "chat.v2"] });
  expect(ws.protocol).toBe("chat.v2");
  const got: (string | Uint8Array)[] = [];
  ws.onmessage = (e) => got.push(typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer));
  const sizes = [0, 1, 7, 125, 126, 127, 1000, 65535, 65536, 70000, 300_000];
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
  const sent: (string | Uint8Array)[] = [];
  for (let i = 0; i < 1000; i++) {
    const n = sizes[rnd() % sizes.length]!;
    if (i % 2 === 0) {
      const m = `${i}:` + String.fromCharCode(97 + (i % 26)).repeat(n) + "é✓";
      sent.push(m);
      ws.send(m);
    } else {
      const m = new Uint8Array(n).map((_, j) => (i + j) & 255);
      sent.push(m);
      ws.send(m);
    }
  }
  await until(() => got.length === 1000);
  for (let i = 0; i < 1000; i++) {
    const a = sent[i]!;
    const b = got[i]!;
    expect(typeof b).toBe(typeof a); // text stays text, binary stays binary
    if (typeof a === "string") expect(b).toBe(a);
    else expect(Buffer.compare(Buffer.from(a), Buffer.from(b as Uint8Array))).toBe(0);
  }
  // what the upstream saw
  const u = upgrades.at(-1)!;
  expect(u.path).toBe("/base/ws/echo");
  expect(u.headers.host).toBe("chat.example:8080");
  expect(u.headers["x-custom"]).toBe("yes");
  expect(u.headers["x-forwarded-for"]).toBe("127.0.0.1");
  expect(u.headers["x-forwarded-host"]).toBe("chat.example:8080");
  expect(u.headers.via).toBe("1.1 hecate");
  expect(u.headers["x-request-id"]).toBeTruthy();
  expect(u.headers.authorization).toBeUndefined(); // the route credential is not forwarded
  const closed = new Promise<CloseEvent>((r) => (ws.onclose = r));
  ws.close(4001, "client bye");
  const ev = await closed;
  expect(ev.code).toBe(4001);
  await until(() => upstreamCloses.some((c) => c.code === 4001 && c.reason === "client bye"));
});

test("an upstream close code and reason reach the client; the exchange ends then", async () => {
  const id = "ws-close-test-1";
  const ws = await open("/ws/closer", { headers: { "x-request-id": id } });
  expect(events).toContain(`open ${id}`);
  expect(events).not.toContain(`close ${id}`);
  const closed = new Promise<CloseEvent>((r) => (ws.onclose = r));
  ws.send("close-me");
  const ev = await closed;
  expect(ev.code).toBe(4002);
  expect(ev.reason).toBe("server bye");
  await until(() => events.includes(`close ${id}`));
  await until(() => finished.some((f) => f.id === id));
  expect(finished.find((f) => f.id === id)).toMatchObject({ status: 101, route: "ws", proto: "HTTP/1.1" });
});

test("an upstream that refuses the upgrade: its status reaches the client", async () => {
  const head = await rawUpgrade("/ws/refuse", "Authorization: Bearer tok\r\n");
  expect(head).toStartWith("HTTP/1.1 403");
  expect(head.toLowerCase()).toContain("x-request-id:");
});

test("an unreachable upstream: 502 after retries, no 101", async () => {
  const head = await rawUpgrade("/dead/x");
  expect(head).toStartWith("HTTP/1.1 502");
});

test("the route's rate limit applies to upgrades", async () => {
  const ws = await open("/lim/a");
  const second = await rawUpgrade("/lim/b");
  expect(second).toStartWith("HTTP/1.1 429");
  ws.close();
});

test("backpressure upstream → client: a client that stops reading stops the upstream", async () => {
  const ws = await open("/ws/flood");
  let received = 0;
  ws.onmessage = (e) => (received += (e.data as ArrayBuffer).byteLength);
  (ws as any).pause(); // stop reading from the socket
  const LIMIT = 192 * 1024 * 1024;
  ws.send(`flood ${LIMIT}`);
  // the upstream sends while the proxy takes data; wait until it stalls (unchanged for 100 ms)
  let last = -1;
  await until(
    () => {
      const settled = flood.sent === last;
      last = flood.sent;
      return settled;
    },
    20_000,
    100,
  );
  console.log(`flood: the upstream stalled after ${(flood.sent / 1048576).toFixed(1)} MiB of ${LIMIT / 1048576}`);
  expect(flood.backpressured).toBe(true);
  expect(flood.sent).toBeLessThan(64 * 1024 * 1024);
  (ws as any).resume();
  await until(() => received === LIMIT, 20_000);
  expect(flood.sent).toBe(LIMIT);
  ws.close();
}, 30_000);

test("backpressure client → upstream: an upstream that stops reading stops the client", async () => {
  const ws = await open("/ws/slow");
  await until(() => pausedUpstream !== null);
  const chunk = new Uint8Array(256 * 1024);
  const total = 96 * 1024 * 1024;
  for (let sent = 0; sent < total; sent += chunk.byteLength) ws.send(chunk);
  // The proxy takes a bounded amount (kernel buffers + ~1 MiB queued to the upstream) and then
  // stops reading the client: the rest stays queued in the client. Wait until the client's
  // queue stops shrinking (unchanged over 100 ms), then look at what is left.
  let last = -1;
  await until(() => {
    const now = ws.bufferedAmount;
    const settled = now === last;
    last = now;
    return settled;
  }, 10_000, 100);
  console.log(`slow upstream: ${(ws.bufferedAmount / 1048576).toFixed(1)} MiB of ${total / 1048576} still queued in the client`);
  expect(ws.bufferedAmount).toBeGreaterThan(32 * 1024 * 1024);
  expect(upstreamReceived).toBe(0);
  pausedUpstream!.resume();
  await until(() => upstreamReceived === total, 20_000);
  ws.close();
}, 30_000);

test("a session survives a reload that does not change its route", async () => {
  const ws = await open("/ws/echo");
  const got: string[] = [];
  ws.onmessage = (e) => got.push(String(e.data));
  ws.send("one");
  await until(() => got.length === 1);
  writeFileSync(configPath, JSON.stringify(cfg([{ name: "extra", pathPrefix: "/extra", upstreams: [`http://127.0.0.1:${up.port}`] }])));
  const res = await reload(h.rt, "test");
  expect(res.ok).toBe(true);
  expect(res.changed.routes.added).toEqual(["extra"]);
  ws.send("two");
  await until(() => got.length === 2);
  expect(got).toEqual(["one", "two"]);
  ws.close();
});
