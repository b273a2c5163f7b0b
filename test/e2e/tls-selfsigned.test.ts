// First run with tls.selfSigned (SPEC §2.5): both files of a pair missing → a certificate for the
// routes' hosts, localhost, 127.0.0.1 and ::1, valid 365 days, written (missing folders created,
// key mode 0600) with a warning; `hecate check` writes nothing; one file missing, or selfSigned
// false, is a config error naming the file.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, rmSync, existsSync, statSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { StartError } from "../../src/runtime/start.ts";
import { curl } from "../helpers/tls-certs.ts";

const BUN = resolve(import.meta.dir, "../../node_modules/.bin/bun");
const MAIN = resolve(import.meta.dir, "../../src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "hecate-selfsigned-"));
const up = startUpstream();
afterAll(() => {
  up.stop();
  rmSync(dir, { recursive: true, force: true });
});

const config = (certFiles: string[], keyFiles: string[], tls: Record<string, unknown> = {}) => ({
  admin: { listen: "127.0.0.1:0" },
  proxy: {
    listen: "127.0.0.1:0",
    routes: [
      { name: "api", hosts: ["api.example.com", "*.apps.example.com"], upstreams: [up.url] },
      { name: "ip", hosts: ["10.1.2.3"], upstreams: [up.url] },
    ],
  },
  tls: { certFiles, keyFiles, ...tls },
  telemetry: { accessLog: false },
});

test("first run: generates, writes with mode 0600, logs a warning, serves it; check writes nothing", async () => {
  const cwd = join(dir, "run");
  mkdirSync(cwd);
  // relative paths, resolved against the working directory, in folders that do not exist yet
  writeFileSync(join(cwd, "hecate.json"), JSON.stringify(config(["certs/pub/hecate.crt"], ["certs/private/deep/hecate.key"])));
  const certPath = join(cwd, "certs/pub/hecate.crt");
  const keyPath = join(cwd, "certs/private/deep/hecate.key");

  const check = Bun.spawn([BUN, MAIN, "check", "-config=hecate.json"], { cwd, stdout: "pipe", stderr: "pipe" });
  expect(await check.exited).toBe(0);
  expect(existsSync(certPath) || existsSync(keyPath)).toBe(false);

  const p = Bun.spawn([BUN, MAIN, "-config=hecate.json"], { cwd, stdout: "pipe", stderr: "pipe" });
  try {
    const lines: any[] = [];
    const reader = p.stdout.getReader();
    let buf = "";
    const deadline = Date.now() + 15000;
    while (!lines.some((l) => l.msg === "listening" && l.listener === "admin") && Date.now() < deadline) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += new TextDecoder().decode(value);
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    }
    reader.releaseLock();
    const warn = lines.find((l) => l.level === "warn" && /self-signed/.test(l.msg));
    expect(warn).toBeDefined();
    expect(warn.cert).toBe(certPath);
    expect(warn.key).toBe(keyPath);

    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(certPath, "utf8"));
    const san = cert.subjectAltName!;
    for (const n of ["DNS:api.example.com", "DNS:*.apps.example.com", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:10.1.2.3"]) expect(san).toContain(n);
    expect(san).toMatch(/IP Address:(::1|0:0:0:0:0:0:0:1)\b/);
    const days = (cert.validToDate.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(364);
    expect(days).toBeLessThan(366);

    // the listener serves it: a client trusting exactly this certificate connects by name and IP
    const pub = lines.find((l) => l.msg === "listening" && l.listener === "public");
    const port = pub.address.split(":").pop();
    for (const url of [`https://localhost:${port}/`, `https://api.example.com:${port}/`, `https://127.0.0.1:${port}/`]) {
      const host = new URL(url).hostname;
      const r = await curl(["--cacert", certPath, "--resolve", `${host}:${port}:127.0.0.1`, url]);
      expect(r.code).toBe(0); // verified against the generated certificate
      expect(r.out).toBe(host === "api.example.com" ? r.out : "no route\n");
      if (host === "api.example.com") expect(JSON.parse(r.out).path).toBe("/");
    }
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }

  // a second run uses the files as they are: no new warning, same certificate
  const before = readFileSync(certPath, "utf8");
  const h = await startHecate(config([certPath], [keyPath]));
  await h.shutdown();
  expect(readFileSync(certPath, "utf8")).toBe(before);
});

async function startErrors(cfg: Record<string, any>): Promise<string[]> {
  try {
    const h = await startHecate(cfg);
    await h.shutdown();
    return [];
  } catch (e) {
    expect(e).toBeInstanceOf(StartError);
    return (e as StartError).errors.map((x) => `${x.path}: ${x.message}`);
  }
}

test("only one file of a pair missing → config error naming it", async () => {
  const d = join(dir, "half");
  mkdirSync(d);
  writeFileSync(join(d, "only.crt"), "not used");
  const errs = await startErrors(config([join(d, "only.crt")], [join(d, "missing.key")]));
  expect(errs.length).toBe(1);
  expect(errs[0]).toStartWith("tls.keyFiles[0]: file not found: ");
  expect(errs[0]).toContain(join(d, "missing.key"));
  expect(existsSync(join(d, "missing.key"))).toBe(false);
});

test("selfSigned: false with both files missing → errors naming both files", async () => {
  const d = join(dir, "nogen");
  const errs = await startErrors(config([join(d, "a.crt")], [join(d, "a.key")], { selfSigned: false }));
  expect(errs).toHaveLength(2);
  expect(errs[0]).toStartWith("tls.certFiles[0]: file not found: " + join(d, "a.crt"));
  expect(errs[1]).toStartWith("tls.keyFiles[0]: file not found: " + join(d, "a.key"));
  expect(existsSync(d)).toBe(false);
});

test("a key that does not match its certificate, or garbage, is a config error", async () => {
  const d = join(dir, "bad");
  const h = await startHecate(config([join(d, "one.crt"), join(d, "two.crt")], [join(d, "one.key"), join(d, "two.key")]));
  await h.shutdown();
  // swap the keys: both pairs are now mismatched
  const k1 = readFileSync(join(d, "one.key"));
  writeFileSync(join(d, "one.key"), readFileSync(join(d, "two.key")));
  writeFileSync(join(d, "two.key"), k1);
  writeFileSync(join(d, "two.crt"), "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
  const errs = await startErrors(config([join(d, "one.crt"), join(d, "two.crt")], [join(d, "one.key"), join(d, "two.key")]));
  expect(errs).toHaveLength(2);
  expect(errs[0]).toStartWith("tls.keyFiles[0]: ");
  expect(errs[0]).toContain("does not match the certificate tls.certFiles[0]");
  expect(errs[1]).toStartWith("tls.certFiles[1]: ");
  expect(errs[1]).toContain("not a PEM certificate");
});
