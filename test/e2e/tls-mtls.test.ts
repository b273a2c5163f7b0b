// mTLS at the handshake (SPEC §2.5): requireClientCert refuses clients without a certificate
// signed by tls.clientCAFile, on the TCP listener (h1, h2) and on the HTTP/3 listener.
// clientCAFile alone: clients are not asked for a certificate (see src/tls/compile-tls.ts).
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";

const pki = makePki();
const [crt, key] = pki.server("srv", ["mtls.test", "127.0.0.1"]);
const up = startUpstream();
const routes = [{ name: "r", upstreams: [up.url] }];
const h = await startHecate({
  proxy: { routes, enableHTTP3: true },
  tls: { certFiles: [crt], keyFiles: [key], clientCAFile: pki.caCert, requireClientCert: true },
});
const optional = await startHecate({ proxy: { routes }, tls: { certFiles: [crt], keyFiles: [key], clientCAFile: pki.caCert } });
const port = h.listeners.publicServer.port!;
const h3port = h.listeners.http3Server!.port!;
const dl = mkdtempSync(join(tmpdir(), "hecate-h3-"));

afterAll(async () => {
  await h.shutdown();
  await optional.shutdown();
  up.stop();
  pki.cleanup();
  rmSync(dl, { recursive: true, force: true });
});

const get = (p: number, extra: string[]) => curl(["--cacert", pki.caCert, "--resolve", `mtls.test:${p}:127.0.0.1`, "-w", "\n%{http_version}", ...extra, `https://mtls.test:${p}/m`]);

test("requireClientCert: no certificate → refused at the handshake, upstream not reached", async () => {
  const before = up.seen.length;
  for (const v of ["--http1.1", "--http2"]) {
    const r = await get(port, [v]);
    expect(r.code).not.toBe(0);
    expect(r.out).not.toContain('"path"');
  }
  expect(up.seen.length).toBe(before);
});

test("requireClientCert: a certificate from another CA is refused", async () => {
  const before = up.seen.length;
  const r = await get(port, ["--cert", pki.rogueCert, "--key", pki.rogueKey]);
  expect(r.code).not.toBe(0);
  expect(up.seen.length).toBe(before);
});

test("requireClientCert: a certificate signed by the CA is served (h1 and h2)", async () => {
  for (const [v, want] of [
    ["--http1.1", "1.1"],
    ["--http2", "2"],
  ] as const) {
    const r = await get(port, [v, "--cert", pki.clientCert, "--key", pki.clientKey]);
    expect(r.code).toBe(0);
    const [body, version] = r.out.split("\n");
    expect(JSON.parse(body!).path).toBe("/m");
    expect(version).toBe(want);
  }
});

async function gtls(name: string, extra: string[]): Promise<string | null> {
  const p = Bun.spawn(["gtlsclient", "--quiet", "--exit-on-all-streams-close", "--timeout=3s", "--handshake-timeout=3s", `--download=${dl}`, ...extra, "127.0.0.1", String(h3port), `https://127.0.0.1:${h3port}/${name}`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  await p.exited;
  return readdirSync(dl).includes(name) ? readFileSync(join(dl, name), "utf8") : null;
}

test("the HTTP/3 listener enforces mTLS too", async () => {
  const before = up.seen.length;
  const refused = await gtls("h3-nocert", []);
  expect(refused === null || refused === "").toBe(true);
  expect(up.seen.length).toBe(before);
  const rogue = await gtls("h3-rogue", ["--cert", pki.rogueCert, "--key", pki.rogueKey]);
  expect(rogue === null || rogue === "").toBe(true);
  expect(up.seen.length).toBe(before);
  const ok = await gtls("h3-cert", ["--cert", pki.clientCert, "--key", pki.clientKey]);
  expect(JSON.parse(ok!).path).toBe("/h3-cert");
  expect(up.seen.length).toBe(before + 1);
});

test("clientCAFile alone: clients without a certificate are accepted", async () => {
  const p = optional.listeners.publicServer.port!;
  const r = await get(p, []);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.out.split("\n")[0]!).path).toBe("/m");
  const withCert = await get(p, ["--cert", pki.clientCert, "--key", pki.clientKey]);
  expect(withCert.code).toBe(0);
});
