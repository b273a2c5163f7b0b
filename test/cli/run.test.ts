// The compiled binary serving: a proxied request, bind failures, config errors at start,
// ./config/example.yaml, and the embedded default (SPEC §1, §2.9).
//
// Ports: everything listens on 127.0.0.1:0 and the test reads the bound address from the
// binary's "listening" log line. The one exception is the embedded default, whose ports are
// fixed by the SPEC (:8080 and 127.0.0.1:9000); that test first checks they are free.
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runHecate, startHecateBinary, root } from "./binary.ts";

beforeAll(() => ensureBinary(), 60_000);

const dir = mkdtempSync(join(tmpdir(), "hecate-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, yaml: string): string {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

const upstream = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const u = new URL(req.url);
    return Response.json({ path: u.pathname + u.search, via: req.headers.get("via"), xff: req.headers.get("x-forwarded-for") });
  },
});
afterAll(() => upstream.stop(true));

test("serves a proxied request end to end and stops with exit 0 on SIGTERM", async () => {
  const file = writeConfig(
    "proxy.yaml",
    `admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  routes:
    - name: api
      pathPrefix: /api
      stripPrefix: true
      upstreams: ["http://127.0.0.1:${upstream.port}/base"]
telemetry: { accessLog: true }
`,
  );
  const h = startHecateBinary([`-config=${file}`]);
  try {
    const pub = await h.address("public");
    const admin = await h.address("admin");
    expect(pub).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(pub.endsWith(":0")).toBe(false);
    await h.waitFor((l) => l.msg === "config loaded" && l.file === file, "config loaded");

    const r = await fetch(`http://${pub}/api/x?y=1`);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { path: string; via: string };
    expect(body.path).toBe("/base/x?y=1");
    expect(body.via).toContain("hecate");

    const miss = await fetch(`http://${pub}/elsewhere`);
    expect(miss.status).toBe(404);
    expect(await miss.text()).toBe("no route\n");

    expect((await fetch(`http://${admin}/healthz`)).status).toBe(200);
    await h.waitFor((l) => l.path === "/api/x" || l.route === "api", "the access log line of the proxied request");
  } finally {
    expect(await h.stop()).toBe(0);
  }
  expect(h.stderr).toBe("");
});

test("a public listener that cannot bind: exit 1, one line naming proxy.listen and why", async () => {
  const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
  try {
    const file = writeConfig("busy-public.yaml", `admin: { listen: "127.0.0.1:0" }\nproxy: { listen: "127.0.0.1:${holder.port}" }\n`);
    const r = await runHecate([`-config=${file}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`proxy.listen: cannot listen on "127.0.0.1:${holder.port}": address already in use\n`);
  } finally {
    holder.stop(true);
  }
});

test("an admin listener that cannot bind: exit 1, one line naming admin.listen", async () => {
  const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
  try {
    const file = writeConfig("busy-admin.yaml", `admin: { listen: "127.0.0.1:${holder.port}" }\nproxy: { listen: "127.0.0.1:0" }\n`);
    const r = await runHecate([`--config`, file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`admin.listen: cannot listen on "127.0.0.1:${holder.port}": address already in use\n`);
  } finally {
    holder.stop(true);
  }
});

test("two instances on one port: the second exits 1 naming proxy.listen", async () => {
  const file = writeConfig("first.yaml", `admin: { listen: "127.0.0.1:0" }\nproxy: { listen: "127.0.0.1:0" }\n`);
  const first = startHecateBinary(["-c", file]);
  try {
    const pub = await first.address("public");
    const second = writeConfig("second.yaml", `admin: { listen: "127.0.0.1:0" }\nproxy: { listen: "${pub}" }\n`);
    const r = await runHecate(["-c", second]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`proxy.listen: cannot listen on "${pub}": address already in use\n`);
  } finally {
    expect(await first.stop()).toBe(0);
  }
});

test("an invalid config at start: every error on stderr, exit 1, nothing listens", async () => {
  const r = await runHecate(["-config=test/config/cases/several-errors/input.yaml"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(readFileSync(join(root, "test/config/cases/several-errors/errors.txt"), "utf8"));
  expect(r.stdout).not.toContain('"listening"');
});

test("without -config, ./config/example.yaml is used when it exists", async () => {
  const cwd = join(dir, "with-default-file");
  mkdirSync(join(cwd, "config"), { recursive: true });
  writeFileSync(
    join(cwd, "config", "example.yaml"),
    `admin: { listen: "127.0.0.1:0" }\nproxy:\n  listen: "127.0.0.1:0"\n  routes: [{ name: d, upstreams: ["http://127.0.0.1:${upstream.port}"] }]\n`,
  );
  const h = startHecateBinary([], { cwd });
  try {
    await h.waitFor((l) => l.msg === "config loaded" && l.file === "config/example.yaml", "config loaded from config/example.yaml");
    const r = await fetch(`http://${await h.address("public")}/from-default`);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { path: string }).path).toBe("/from-default");
  } finally {
    expect(await h.stop()).toBe(0);
  }
});

/** Fail (not skip) with a clear message when a port the SPEC fixes is taken on this machine. */
function assertFree(hostname: string, port: number): void {
  let s: ReturnType<typeof Bun.serve>;
  try {
    s = Bun.serve({ hostname, port, fetch: () => new Response("") });
  } catch (e) {
    throw new Error(`the embedded default listens on ${hostname}:${port} (SPEC §2.9), but that port is taken on this machine (${(e as Error).message}); free it and run again`);
  }
  s.stop(true);
}

test("the embedded default: plain HTTP on :8080, admin on 127.0.0.1:9000, 404 saying how to pass a config", async () => {
  assertFree("0.0.0.0", 8080);
  assertFree("127.0.0.1", 9000);
  const cwd = join(dir, "empty");
  mkdirSync(cwd, { recursive: true });
  const h = startHecateBinary([], { cwd });
  try {
    expect(await h.address("public")).toMatch(/:8080$/);
    expect(await h.address("admin")).toBe("127.0.0.1:9000");
    const warn = await h.waitFor((l) => l.embeddedDefault === true, "the embedded-default log line");
    expect(warn.level).toBe("warn");
    expect(warn.msg).toContain("embedded default");

    for (const path of ["/", "/api/x"]) {
      const r = await fetch(`http://127.0.0.1:8080${path}`);
      expect(r.status).toBe(404);
      expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
      expect(r.headers.get("x-request-id")).toBeTruthy();
      const text = await r.text();
      expect(text).toContain("embedded default");
      expect(text).toContain("-config=FILE");
      expect(text.endsWith("\n")).toBe(true);
    }
    expect((await fetch("http://127.0.0.1:9000/healthz")).status).toBe(200);
  } finally {
    expect(await h.stop()).toBe(0);
  }
});
