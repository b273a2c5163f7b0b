// Helpers of the workers-*.test.ts files: Hecate with `workers: N` is started as a child
// process (`bun src/main.ts`, or the compiled binary), because worker threads and SO_REUSEPORT
// are process-level. The config is written as JSON (a YAML subset) into a temp folder; the
// process runs with HECATE_DEBUG_WORKER=1 (the debug-only /debug/worker-crash endpoint).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunningHecate, root } from "../cli/binary.ts";

export interface WorkersHecate {
  h: RunningHecate;
  url: string;
  adminUrl: string;
  file: string;
  /** Rewrite the config file (then POST /admin/reload or SIGHUP). */
  write(config: unknown): void;
  /** /debug/vars: per-worker request counts (exact: the workers publish before it answers). */
  vars(): Promise<{ requests: number; inflight: number; generation: number; workers: { id: number; running: boolean; requests: number; inflight: number; restarts: number }[] }>;
  /** Per-worker request counts, by worker id. */
  perWorker(): Promise<Map<number, number>>;
  stop(): Promise<number>;
}

export async function startWorkers(config: Record<string, any>, opts: { bin?: string[] } = {}): Promise<WorkersHecate> {
  const dir = mkdtempSync(join(tmpdir(), "hecate-workers-"));
  const file = join(dir, "hecate.yaml");
  const full = (c: Record<string, any>) => ({
    ...c,
    admin: { listen: "127.0.0.1:0", ...c.admin },
    proxy: { listen: "127.0.0.1:0", workers: 2, ...c.proxy },
    telemetry: { accessLog: false, logLevel: "info", ...c.telemetry },
  });
  const write = (c: unknown) => writeFileSync(file, JSON.stringify(full(c as Record<string, any>), null, 1));
  write(config);
  const cmd = opts.bin ?? [process.execPath, join(root, "src/main.ts")];
  const h = new RunningHecate(
    Bun.spawn([...cmd, "-config", file], { cwd: dir, stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, HECATE_DEBUG_WORKER: "1" } }) as never,
  );
  const started = await h.waitFor((l) => l.msg === "workers started", '"workers started"', 20_000);
  const admin = await h.address("admin");
  const url = `http://${started.address}`;
  const adminUrl = `http://${admin}`;
  const vars = async () => (await (await fetch(`${adminUrl}/debug/vars`)).json()) as Awaited<ReturnType<WorkersHecate["vars"]>>;
  return {
    h,
    url,
    adminUrl,
    file,
    write,
    vars,
    async perWorker() {
      return new Map((await vars()).workers.map((w) => [w.id, w.requests]));
    },
    async stop() {
      try {
        return await h.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** One request on a new connection (the kernel picks the worker per connection). */
export async function fresh(url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("connection", "close");
  return fetch(url, { ...init, headers, keepalive: false });
}

/** `n` requests, each on a new connection, `parallel` at a time; their statuses and bodies. */
export async function many(url: string, n: number, init: RequestInit = {}, parallel = 8): Promise<{ status: number; body: string }[]> {
  const out: { status: number; body: string }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        next++;
        const r = await fresh(url, init);
        out.push({ status: r.status, body: await r.text() });
      }
    }),
  );
  return out;
}

/** Poll `fn` until it returns a value other than undefined (or throw after `ms`). */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, what: string, ms = 10_000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Workers whose request count grew between two perWorker() snapshots. */
export function grew(before: Map<number, number>, after: Map<number, number>): number[] {
  return [...after].filter(([id, n]) => n > (before.get(id) ?? 0)).map(([id]) => id);
}
