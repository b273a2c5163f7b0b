// `hecate check -config=FILE --diff ADMIN_URL [--token T]` against a running instance.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHecate } from "../helpers/hecate.ts";
import { diffConfigs } from "../../src/admin/diff.ts";

const root = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "hecate-diff-"));
const TOKEN = "diff-token";

const running = {
  admin: { auth: { bearerToken: TOKEN } },
  proxy: {
    retry: { maxRetries: 2 },
    policy: { rateLimit: { rps: 100 } },
    routes: [
      { name: "api", hosts: ["api.example.com"], pathPrefix: "/v1", upstreams: ["http://127.0.0.1:18001", "http://127.0.0.1:18002"] },
      { name: "web", upstreams: ["http://127.0.0.1:18003"] },
      { name: "legacy", pathPrefix: "/old", upstreams: ["http://127.0.0.1:18009"] },
    ],
  },
};
const h = await startHecate(running);
afterAll(async () => {
  await h.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** Run the CLI (async: the admin listener it asks lives in this process). */
async function check(config: unknown, ...extra: string[]) {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, typeof config === "string" ? config : JSON.stringify(config));
  const p = Bun.spawn([process.execPath, "src/main.ts", "check", `-config=${file}`, ...extra], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

test("prints added, removed and changed routes with their keys, upstreams, policies and other settings", async () => {
  const file = structuredClone(running) as any;
  file.admin.auth.bearerToken = "a-different-token"; // secrets are not compared
  file.admin.listen = "127.0.0.1:0";
  file.proxy.listen = "127.0.0.1:0";
  file.telemetry = { accessLog: false, logLevel: "warn" }; // as startHecate sets them
  file.proxy.retry.maxRetries = 3;
  file.proxy.policy.rateLimit.rps = 50;
  file.proxy.routes = [
    { name: "api", hosts: ["api.example.com"], pathPrefix: "/v2", upstreams: ["http://127.0.0.1:18001", { url: "http://127.0.0.1:18004", weight: 2 }] },
    { name: "web", upstreams: ["http://127.0.0.1:18003"] },
    { name: "new", pathPrefix: "/new", upstreams: ["http://127.0.0.1:18005"] },
  ];
  const r = await check(file, "--diff", h.adminUrl, "--token", TOKEN);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  const diff = r.out.slice(r.out.indexOf("\ndiff: "));
  expect(diff).toContain(`diff: running instance at ${h.adminUrl} → this file`);
  expect(diff).toContain("routes: 1 added, 1 removed, 1 changed");
  expect(diff).toContain("  + new  hosts=* pathPrefix=/new upstreams=");
  expect(diff).toContain("  - legacy");
  expect(diff).toContain("  ~ api: pathPrefix, upstreams");
  expect(diff).toContain('pathPrefix: "/v1" → "/v2"');
  expect(diff).not.toMatch(/~ web/);
  expect(diff).toContain("upstreams: 2 added, 2 removed");
  expect(diff).toContain("  + http://127.0.0.1:18004  (routes: api)");
  expect(diff).toContain("  + http://127.0.0.1:18005  (routes: new)");
  expect(diff).toContain("  - http://127.0.0.1:18002  (was in routes: api)");
  expect(diff).toContain("  - http://127.0.0.1:18009  (was in routes: legacy)");
  expect(diff).toContain("policies: 2 changed keys");
  expect(diff).toContain("proxy.policy.rateLimit.burst: 100 → 50"); // the derived default follows rps
  expect(diff).toContain("proxy.policy.rateLimit.rps: 100 → 50");
  expect(diff).toContain("proxy.retry.maxRetries: 2 → 3");
  expect(diff).not.toContain("proxy.listen");
  expect(diff).not.toContain("bearerToken");
  expect(diff).toContain("other settings: 1 changed key");
});

test("an identical file shows no changes; restart-only keys are marked", async () => {
  const same = { ...structuredClone(running), telemetry: { accessLog: false, logLevel: "warn" } } as any;
  same.admin.listen = "127.0.0.1:0";
  same.proxy.listen = "127.0.0.1:0";
  let r = await check(same, "--diff", h.adminUrl, "--token", TOKEN);
  expect(r.code).toBe(0);
  expect(r.out).toContain("routes: no changes\nupstreams: no changes\npolicies: no changes\nother settings: no changes\n");

  same.proxy.listen = "127.0.0.1:8443";
  r = await check(same, "--diff", h.adminUrl, "--token", TOKEN);
  expect(r.out).toContain('proxy.listen: "127.0.0.1:0" → "127.0.0.1:8443"  (needs restart)');
});

test("an invalid file exits 1 with its errors and asks nothing", async () => {
  const r = await check("proxy:\n  routes:\n    - name: a\n      pathPrefx: /x\n", "--diff", "127.0.0.1:1");
  expect(r.code).toBe(1);
  expect(r.err).toContain("proxy.routes[0].pathPrefx");
  expect(r.out).not.toContain("diff:");
});

test("without the token the admin API refuses: exit 2 with a hint", async () => {
  const r = await check(running, "--diff", h.adminUrl);
  expect(r.code).toBe(2);
  expect(r.err).toContain("401");
  expect(r.err).toContain("--token");
});

test("an unreachable admin URL: exit 2 with the reason", async () => {
  const dead = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const url = `http://127.0.0.1:${dead.port}`;
  dead.stop(true);
  const r = await check(running, "--diff", url);
  expect(r.code).toBe(2);
  expect(r.err).toContain("cannot read the running config");
});

test("diffConfigs compares by route name, not position", () => {
  const a = { proxy: { routes: [{ name: "x", pathPrefix: "/x", upstreams: ["http://h:1"] }, { name: "y", pathPrefix: "/y", upstreams: ["http://h:2"] }] } } as any;
  const b = { proxy: { routes: [a.proxy.routes[1], a.proxy.routes[0]] } } as any;
  const d = diffConfigs(a, b);
  expect(d.routes).toEqual({ added: [], removed: [], changed: [] });
  expect(d.upstreams).toEqual({ added: [], removed: [] });
});
