// HTTP/3 (SPEC §2.2 enableHTTP3/http3Listen, §3.6 Alt-Svc) with real clients: Bun's fetch over
// QUIC and ngtcp2's gtlsclient (also under 20% packet loss both ways); Alt-Svc on TLS responses,
// once, with the right port, also when HTTP/3 listens on its own port.
import { test, expect, afterAll } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";
import { hooks } from "../../src/pipeline/hooks.ts";

const pki = makePki();
const [crt, key] = pki.server("h3", ["h3.test", "127.0.0.1"]);
// the upstream advertises an Alt-Svc of its own: it must not reach the client next to Hecate's
const up = startUpstream(async (req) => {
  const path = new URL(req.url).pathname;
  return new Response(`body of ${path}\n${"x".repeat(3000)}`, { headers: { "alt-svc": 'h3=":1"; ma=60' } });
});
const tls = { certFiles: [crt], keyFiles: [key] };
const routes = [{ name: "r", upstreams: [up.url] }];
const same = await startHecate({ proxy: { routes, enableHTTP3: true }, tls });
const separate = await startHecate({ proxy: { routes, enableHTTP3: true, http3Listen: "127.0.0.1:0" }, tls });
const dl = mkdtempSync(join(tmpdir(), "hecate-h3dl-"));

// record the HTTP version the pipeline saw per request id
const protoById = new Map<string, string>();
const prevFinish = hooks.finish;
hooks.finish = (ex, d) => {
  protoById.set(ex.requestId, ex.proto);
  prevFinish(ex, d);
};

afterAll(async () => {
  hooks.finish = prevFinish;
  await same.shutdown();
  await separate.shutdown();
  up.stop();
  pki.cleanup();
  rmSync(dl, { recursive: true, force: true });
});

const h3fetch = (port: number, path: string, ms = 5000) =>
  fetch(`https://127.0.0.1:${port}${path}`, { protocol: "http3", tls: { rejectUnauthorized: false }, signal: AbortSignal.timeout(ms) } as any);

test("same port: HTTP/3 via Bun fetch; Alt-Svc once on h1 and h2 responses", async () => {
  const port = same.listeners.publicServer.port!;
  expect(same.listeners.http3Server!.port).toBe(port);
  const r = await h3fetch(port, "/q?x=1");
  expect(r.status).toBe(200);
  expect(await r.text()).toStartWith("body of /q\n");
  expect(protoById.get(r.headers.get("x-request-id")!)).toBe("HTTP/3");
  for (const v of ["--http1.1", "--http2"]) {
    const c = await curl(["-k", "-D", "-", "-o", "/dev/null", v, `https://127.0.0.1:${port}/a`]);
    expect(c.code).toBe(0);
    const alt = c.out.split("\r\n").filter((l) => l.toLowerCase().startsWith("alt-svc:"));
    expect(alt).toEqual([`alt-svc: h3=":${port}"; ma=86400`]);
  }
});

test("gtlsclient: 20 requests on one QUIC connection, also with 20% loss each way", async () => {
  const port = same.listeners.publicServer.port!;
  for (const loss of ["0", "0.2"]) {
    const sub = join(dl, `loss-${loss}`);
    mkdirSync(sub);
    const uris = Array.from({ length: 20 }, (_, i) => `https://127.0.0.1:${port}/f${i}`);
    const p = Bun.spawn(["gtlsclient", "--quiet", "--exit-on-all-streams-close", `--tx-loss=${loss}`, `--rx-loss=${loss}`, "--timeout=20s", `--download=${sub}`, "127.0.0.1", String(port), ...uris], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await p.exited).toBe(0);
    const files = readdirSync(sub);
    expect(files.length).toBe(20);
    for (let i = 0; i < 20; i++) expect(readFileSync(join(sub, `f${i}`), "utf8")).toBe(`body of /f${i}\n${"x".repeat(3000)}`);
  }
}, 60_000);

test("http3Listen on its own port: Alt-Svc names that port; the TCP port has no QUIC", async () => {
  const tcp = separate.listeners.publicServer.port!;
  const udp = separate.listeners.http3Server!.port!;
  expect(udp).not.toBe(tcp);
  const c = await curl(["-k", "-D", "-", "-o", "/dev/null", "--http2", `https://127.0.0.1:${tcp}/a`]);
  const alt = c.out.split("\r\n").filter((l) => l.toLowerCase().startsWith("alt-svc:"));
  expect(alt).toEqual([`alt-svc: h3=":${udp}"; ma=86400`]);
  const r = await h3fetch(udp, "/sep");
  expect(r.status).toBe(200);
  expect(await r.text()).toStartWith("body of /sep\n");
  expect(protoById.get(r.headers.get("x-request-id")!)).toBe("HTTP/3");
  const none = await h3fetch(tcp, "/sep", 1000).then(
    () => "answered",
    () => "failed",
  );
  expect(none).toBe("failed");
}, 20_000);
