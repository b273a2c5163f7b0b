// The hostile-input corpus (cases.ts) over TLS (HTTP/1.1 by ALPN): same bytes, same contract as
// corpus.test.ts, through Hecate's TLS listener with a certificate made by openssl here.
import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate } from "../helpers/hecate.ts";
import { CASES } from "./cases.ts";
import { corpusConfig, runCase, type CorpusEnv } from "./corpus-runner.ts";
import { recordingUpstream } from "./wire.ts";

const dir = mkdtempSync(join(tmpdir(), "hecate-hostile-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");

describe("hostile corpus over TLS", () => {
  const env = {} as CorpusEnv;
  beforeAll(async () => {
    const r = Bun.spawnSync(
      ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,DNS:h,IP:127.0.0.1"],
      { stderr: "pipe" },
    );
    if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
    env.up = recordingUpstream();
    const cfg = corpusConfig(env.up.url);
    cfg.tls = { certFiles: [cert], keyFiles: [key], selfSigned: false };
    env.h = await startHecate(cfg);
    env.port = Number(new URL(env.h.url).port);
    env.tls = true;
  }, 30_000);
  afterAll(async () => {
    await env.h?.shutdown();
    env.up?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the listener serves TLS", () => {
    expect(env.h.url.startsWith("https://")).toBe(true);
    expect(env.h.listeners.tls).toBe(true);
  });

  for (const c of CASES)
    test(`${c.name} (${c.rfc})`, async () => {
      expect(await runCase(c, env)).toEqual([]);
    });
});
