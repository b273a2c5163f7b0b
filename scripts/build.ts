// `bun run build`: the single Hecate binary (SPEC: one Bun-compiled binary).
//
//   bun run build                 dist/hecate        for this machine
//   bun run build --musl          also dist/hecate-musl (linux x64, musl libc: Alpine)
//   BUILD_MUSL=1 bun run build    same
//
// The musl runtime is not part of the installed bun package: `bun build` downloads it from the
// npm registry the first time (then it is cached), so the musl build is opt-in. The binary
// needs libstdc++ at run time (`apk add libstdc++` on Alpine; see the Dockerfile).
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * The bundle's options and entry points, shared with test/cli/bundle.test.ts.
 * The worker thread's module is a second entry point (proxy.workers > 1: src/runtime/workers.ts
 * loads it from /$bunfs/root/runtime/worker-entry.ts, its name relative to src/).
 * --splitting: a module imported with `import()` (OpenTelemetry and its exporters, the worker
 * supervisor, x509) goes into a chunk of its own with the Node builtins it imports. Without it,
 * the bundle hoists those builtins (node:http, node:http2 through gRPC, node:zlib, …) to its top
 * and every process loads them, and each loaded module lengthens every young-generation GC
 * pause, which is Hecate's p99 (bench/RESULTS.md, eighth session).
 */
export const BUNDLE_ARGS = ["--minify", "--splitting"];
export const ENTRY_POINTS = ["src/main.ts", "src/runtime/worker-entry.ts"];

if (import.meta.main) build();

function build(): void {
  const root = join(import.meta.dir, "..");
  const args = process.argv.slice(2);
  for (const a of args)
    if (a !== "--musl") {
      console.error(`build: unknown argument ${JSON.stringify(a)} (only --musl)`);
      process.exit(2);
    }
  const musl = args.includes("--musl") || process.env.BUILD_MUSL === "1";

  const targets: { outfile: string; target?: string }[] = [{ outfile: "dist/hecate" }];
  if (musl) targets.push({ outfile: "dist/hecate-musl", target: "bun-linux-x64-musl" });

  mkdirSync(join(root, "dist"), { recursive: true });
  for (const t of targets) {
    const started = performance.now();
    const cmd = [process.execPath, "build", "--compile", ...BUNDLE_ARGS, ...(t.target ? [`--target=${t.target}`] : []), ...ENTRY_POINTS, "--outfile", t.outfile];
    const r = Bun.spawnSync(cmd, { cwd: root, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) {
      process.stderr.write(r.stdout.toString() + r.stderr.toString());
      console.error(`build: ${t.outfile} failed (exit ${r.exitCode})${t.target ? `; the ${t.target} runtime is fetched from the npm registry, which must be reachable` : ""}`);
      process.exit(1);
    }
    const mb = (statSync(join(root, t.outfile)).size / 1e6).toFixed(0);
    console.log(`build: ${t.outfile}${t.target ? ` (${t.target})` : ""}, ${mb} MB, ${Math.round(performance.now() - started)} ms`);
  }
}
