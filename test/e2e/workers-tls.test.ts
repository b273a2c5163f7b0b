// TLS with two workers: the main thread writes the self-signed pair it generated before the
// workers compile, so every worker serves the same certificate (the one on disk).
import { test, expect, afterAll } from "bun:test";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { startUpstream } from "../helpers/hecate.ts";
import { startWorkers, grew, type WorkersHecate } from "./workers-helpers.ts";

const up = startUpstream(() => new Response("ok"));
let hx: WorkersHecate | undefined;
afterAll(async () => {
  await hx?.stop();
  up.stop();
});

/** One request on a new TLS connection: the status line and the server certificate's SHA-256. */
function tlsGet(port: number): Promise<{ status: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] }, () => {
      const fingerprint = s.getPeerCertificate().fingerprint256;
      s.write("GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
      let data = "";
      s.on("data", (d) => (data += d));
      s.on("end", () => resolve({ status: data.slice(0, data.indexOf("\r\n")), fingerprint }));
    });
    s.on("error", reject);
  });
}

test("both workers serve the one self-signed certificate the main thread wrote", async () => {
  hx = await startWorkers({ proxy: { routes: [{ name: "r", upstreams: [up.url] }] }, tls: { certFiles: ["certs/h.crt"], keyFiles: ["certs/h.key"] } });
  const port = Number(new URL(hx.url).port);
  const onDisk = new X509Certificate(readFileSync(join(dirname(hx.file), "certs/h.crt"))).fingerprint256;
  const before = await hx.perWorker();
  const got: { status: string; fingerprint: string }[] = [];
  for (let i = 0; i < 8; i++) got.push(...(await Promise.all(Array.from({ length: 5 }, () => tlsGet(port)))));
  expect(got.map((g) => g.status)).toEqual(got.map(() => "HTTP/1.1 200 OK"));
  expect(new Set(got.map((g) => g.fingerprint))).toEqual(new Set([onDisk]));
  expect(grew(before, await hx.perWorker()).sort()).toEqual([1, 2]);
  expect(hx.h.lines.filter((l) => l.msg?.startsWith("tls: no certificate found")).length).toBe(1);
});
