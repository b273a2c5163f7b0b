// TLS termination with real clients (curl, openssl s_client): SNI picks the certificate among
// several pairs, HTTP/2 by ALPN with HTTP/1.1 fallback, minVersion, X-Forwarded-Proto.
import { test, expect, afterAll } from "bun:test";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";

const pki = makePki();
const [aCrt, aKey] = pki.server("a", ["a.test", "*.a.test"]);
const [bCrt, bKey] = pki.server("b", ["b.test"]);
const up = startUpstream();
const routes = [{ name: "r", upstreams: [up.url] }];
const h = await startHecate({ proxy: { routes }, tls: { certFiles: [aCrt, bCrt], keyFiles: [aKey, bKey] } });
const h13 = await startHecate({ proxy: { routes }, tls: { certFiles: [aCrt], keyFiles: [aKey], minVersion: "1.3" } });
const port = h.listeners.publicServer.port!;
const port13 = h13.listeners.publicServer.port!;

afterAll(async () => {
  await h.shutdown();
  await h13.shutdown();
  up.stop();
  pki.cleanup();
});

/** Subject CN of the certificate the server presented, via curl's %{certs}. */
async function servedCN(name: string, p = port, extra: string[] = []): Promise<{ cn: string; code: number; version: string; body: string }> {
  const r = await curl(["--cacert", pki.caCert, "--resolve", `${name}:${p}:127.0.0.1`, "-w", "\n%{http_version}\n%{certs}", ...extra, `https://${name}:${p}/x`]);
  const cn = /Subject:\s*CN\s*=\s*(\S+)/.exec(r.out)?.[1] ?? "";
  const lines = r.out.split("\n");
  return { cn, code: r.code, version: lines[1] ?? "", body: lines[0] ?? "" };
}

test("SNI picks the certificate of each name (exact and wildcard)", async () => {
  const a = await servedCN("a.test");
  expect(a.code).toBe(0);
  expect(a.cn).toBe("a.test");
  expect(JSON.parse(a.body).path).toBe("/x");
  const sub = await servedCN("api.a.test");
  expect(sub.code).toBe(0);
  expect(sub.cn).toBe("a.test");
  const b = await servedCN("b.test");
  expect(b.code).toBe(0);
  expect(b.cn).toBe("b.test");
});

test("a client without SNI gets the first pair", async () => {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-noservername"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  p.stdin.end();
  const out = await new Response(p.stdout).text();
  await p.exited;
  expect(out).toMatch(/subject=CN\s*=\s*a\.test/);
  // and openssl with -servername b.test sees b
  const q = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", "b.test"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  q.stdin.end();
  expect(await new Response(q.stdout).text()).toMatch(/subject=CN\s*=\s*b\.test/);
  await q.exited;
});

test("HTTP/2 by ALPN, HTTP/1.1 fallback; X-Forwarded-Proto https", async () => {
  const h2 = await servedCN("a.test", port, ["--http2"]);
  expect(h2.version).toBe("2");
  const h1 = await servedCN("a.test", port, ["--http1.1"]);
  expect(h1.version).toBe("1.1");
  expect(JSON.parse(h1.body).headers["x-forwarded-proto"]).toBe("https");
  expect(JSON.parse(h2.body).headers["x-forwarded-proto"]).toBe("https");
});

test("minVersion 1.3 refuses TLS 1.2; the default accepts it", async () => {
  const refused = await servedCN("a.test", port13, ["--tls-max", "1.2"]);
  expect(refused.code).not.toBe(0);
  expect(refused.body).toBe("");
  const ok13 = await servedCN("a.test", port13, ["--tlsv1.3"]);
  expect(ok13.code).toBe(0);
  expect(ok13.cn).toBe("a.test");
  const ok12 = await servedCN("a.test", port, ["--tls-max", "1.2"]);
  expect(ok12.code).toBe(0);
  // below 1.2 is never accepted
  const old = await servedCN("a.test", port, ["--tlsv1.0", "--tls-max", "1.1"]);
  expect(old.code).not.toBe(0);
});
