// What every Hecate process loads up front. scripts/build.ts bundles with --splitting so that a
// module imported with `import()` (OpenTelemetry and its exporters, the worker supervisor, x509)
// keeps the Node builtins it imports in its own chunk; optional features load theirs with
// `require()` when first used (node:http2 for h2c upstreams, node:tls for the ALPN probe,
// node:crypto for a tls section, node:inspector for a CPU profile, maxmind). Every module a
// process has loaded lengthens each of its young-generation GC pauses (bench/RESULTS.md, eighth
// session), so this walks the static import graph of the same bundle from its entry point.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUNDLE_ARGS, ENTRY_POINTS } from "../../scripts/build.ts";
import { root } from "./binary.ts";

const out = mkdtempSync(join(tmpdir(), "hecate-bundle-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Modules reached from `entry` through static `import` / `export … from`, and the bare ones among them. */
function staticGraph(dir: string, entry: string): { files: Set<string>; external: Set<string> } {
  const files = new Set<string>();
  const external = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    const src = readFileSync(join(dir, f), "utf8");
    for (const m of src.matchAll(/(?:^|[;}\s])(?:import|export)\s*(?:[^"'();]*?from\s*)?["']([^"']+)["']/g)) {
      const spec = m[1]!;
      if (spec.startsWith("./")) todo.push(spec.slice(2));
      else external.add(spec.replace(/^node:/, ""));
    }
  }
  return { files, external };
}

test("the bundle's static import graph holds no optional Node builtin", () => {
  const r = Bun.spawnSync([process.execPath, "build", "--target=bun", ...BUNDLE_ARGS, ...ENTRY_POINTS, "--outdir", out], { cwd: root, stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  const { files, external } = staticGraph(out, "main.js");
  expect([...files].some((f) => f !== "main.js")).toBe(true); // the walk follows chunks
  expect(external.has("fs")).toBe(true); // and sees builtins (main.ts imports node:fs)
  const optional = ["http", "https", "http2", "zlib", "stream", "inspector", "tls", "net", "cluster", "crypto", "module", "worker_threads", "dns", "url"];
  expect([...external].filter((m) => optional.includes(m)).sort()).toEqual([]);
}, 60_000);

test("the Dockerfile builds with the same options and entry points", () => {
  const line = readFileSync(join(root, "Dockerfile"), "utf8").split("\n").find((l) => l.startsWith("RUN bun build --compile"));
  expect(line).toBeDefined();
  const words = line!.split(/\s+/);
  for (const a of [...BUNDLE_ARGS, ...ENTRY_POINTS]) expect(words).toContain(a);
});
