// Certificates follow a reload (SPEC §2.7): new connections get the new certificate (and a new
// minVersion) at once; streams and WebSocket sessions open on the old listener go on; an invalid
// certificate fails the reload and changes nothing; an unchanged TLS section does not re-bind.
import { test, expect, afterAll } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";
import { reload } from "../../src/runtime/reload.ts";

const pki = makePki();
const [oldCrt, oldKey] = pki.server("old", ["old.test", "reload.test"]);
const [newCrt, newKey] = pki.server("new", ["new.test", "reload.test"]);
const dir = mkdtempSync(join(tmpdir(), "hecate-tlsreload-"));
const certPath = join(dir, "site.crt");
const keyPath = join(dir, "site.key");
copyFileSync(oldCrt, certPath);
copyFileSync(oldKey, keyPath);

// upstream: /sse streams one event each time the test releases one; /ws echoes
const waiting: (() => void)[] = [];
const up = startUpstream((req) => {
  const path = new URL(req.url).pathname;
  if (path === "/sse") {
    let n = 0;
    const stream = new ReadableStream({
      async pull(c) {
        if (n > 0) await new Promise<void>((r) => waiting.push(r)); // the first event goes at once
        c.enqueue(new TextEncoder().encode(`data: ${n++}\n\n`));
        if (n === 3) c.close();
      },
    });
    return new Response(stream, { headers: { "content-type": "text/event-stream" } });
  }
  return new Response("ok");
});
const wsUp = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req, server) {
    return server.upgrade(req) ? undefined : new Response("no", { status: 400 });
  },
  websocket: { message: (ws, m) => void ws.send(m) },
});

const cfg = (tls: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  proxy: {
    listen: "127.0.0.1:0",
    routes: [
      { name: "ws", pathPrefix: "/ws", upstreams: [`http://127.0.0.1:${wsUp.port}`] },
      { name: "r", upstreams: [up.url] },
    ],
  },
  tls: { certFiles: [certPath], keyFiles: [keyPath], ...tls },
  telemetry: { accessLog: false, logLevel: "warn" },
});
const configPath = join(dir, "hecate.json");
writeFileSync(configPath, JSON.stringify(cfg()));
const h = await startHecate(cfg(), { configPath });
const port = h.listeners.publicServer.port!;

afterAll(async () => {
  await h.shutdown();
  up.stop();
  wsUp.stop(true);
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function cn(extra: string[] = []): Promise<string> {
  const r = await curl(["--cacert", pki.caCert, "--resolve", `reload.test:${port}:127.0.0.1`, "-w", "%{certs}", "-o", "/dev/null", ...extra, `https://reload.test:${port}/`]);
  return /Subject:\s*CN\s*=\s*(\S+)/.exec(r.out)?.[1] ?? `error ${r.code}`;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await Bun.sleep(5);
  }
}

test("new certificates on reload; open streams and WebSockets carry on", async () => {
  expect(await cn()).toBe("old.test");

  // a WebSocket session and an SSE stream, both on the listener that has the old certificate
  const ws2 = new WebSocket(`wss://127.0.0.1:${port}/ws`, { headers: { host: "reload.test" }, tls: { rejectUnauthorized: false } } as any);
  const echoes: string[] = [];
  ws2.onmessage = (e) => echoes.push(String(e.data));
  await new Promise((r, j) => ((ws2.onopen = r), (ws2.onerror = j)));
  ws2.send("before");
  await until(() => echoes.length === 1);

  const sse = await fetch(`https://127.0.0.1:${port}/sse`, { tls: { rejectUnauthorized: false } } as any);
  const reader = sse.body!.getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toBe("data: 0\n\n");

  // swap the files and reload
  const oldServer = h.listeners.publicServer;
  copyFileSync(newCrt, certPath);
  copyFileSync(newKey, keyPath);
  const res = await reload(h.rt, "test");
  expect(res.ok).toBe(true);
  expect(res.needsRestart).toEqual([]);
  expect(h.listeners.publicServer).not.toBe(oldServer);
  expect(h.listeners.publicServer.port).toBe(port);
  expect(await cn()).toBe("new.test");

  // the old connections still work
  ws2.send("after");
  await until(() => echoes.length === 2);
  expect(echoes).toEqual(["before", "after"]);
  for (let i = 1; i < 3; i++) {
    await until(() => waiting.length > 0);
    waiting.shift()!();
    const ev = await reader.read();
    expect(new TextDecoder().decode(ev.value)).toBe(`data: ${i}\n\n`);
  }
  expect((await reader.read()).done).toBe(true);
  const closed = new Promise<number>((r) => (ws2.onclose = (e) => r(e.code)));
  ws2.close(1000);
  expect(await closed).toBe(1000);
});

test("an unchanged tls section does not re-bind; an invalid certificate fails the reload", async () => {
  const server = h.listeners.publicServer;
  const res = await reload(h.rt, "test");
  expect(res.ok).toBe(true);
  expect(h.listeners.publicServer).toBe(server);

  writeFileSync(certPath, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
  const bad = await reload(h.rt, "test");
  expect(bad.ok).toBe(false);
  expect(bad.errors[0]!.path).toBe("tls.certFiles[0]");
  expect(h.listeners.publicServer).toBe(server);
  expect(await cn()).toBe("new.test");
  copyFileSync(newCrt, certPath);
});

test("minVersion changes on reload", async () => {
  expect(await cn(["--tls-max", "1.2"])).toBe("new.test");
  writeFileSync(configPath, JSON.stringify(cfg({ minVersion: "1.3" })));
  const res = await reload(h.rt, "test");
  expect(res.ok).toBe(true);
  expect(await cn(["--tls-max", "1.2"])).toStartWith("error");
  expect(await cn()).toBe("new.test");
});
