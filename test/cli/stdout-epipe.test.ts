// The log reader going away (EPIPE on stdout) must not take the proxy down.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, bin } from "./binary.ts";

const up = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
afterAll(() => up.stop(true));

test("a closed stdout does not crash the proxy; it keeps serving", async () => {
  ensureBinary();
  const dir = mkdtempSync(join(tmpdir(), "hecate-epipe-"));
  const cfg = join(dir, "c.yaml");
  writeFileSync(cfg, `admin: { listen: "127.0.0.1:0" }\nproxy:\n  listen: "127.0.0.1:0"\n  routes: [{ name: a, upstreams: ["http://127.0.0.1:${up.port}"] }]\n`);
  const p = Bun.spawn([bin, `-config=${cfg}`], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const reader = p.stdout.getReader();
  let text = "";
  let base = "";
  while (base === "") {
    const { done, value } = await reader.read();
    if (done) throw new Error("stdout ended: " + text);
    text += new TextDecoder().decode(value);
    const m = /"listener":"public","address":"([^"]+)"/.exec(text);
    if (m) base = `http://${m[1]}`;
  }
  await reader.cancel(); // the log reader goes away: further writes hit EPIPE
  for (let i = 0; i < 200; i++) {
    const r = await fetch(`${base}/x${i}`); // each request writes an access-log line
    expect(r.status).toBe(200);
    await r.text();
  }
  expect(p.exitCode).toBeNull();
  p.kill("SIGTERM");
  expect(await p.exited).toBe(0);
}, 30_000);
