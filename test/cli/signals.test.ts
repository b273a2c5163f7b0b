// Signals against the compiled binary (SPEC §4): SIGHUP reloads the file, SIGTERM/SIGINT drain,
// stop accepting, let in-flight requests finish (up to shutdownTimeoutSec) and exit 0. The
// binary logs its bound addresses in the "listening" lines, so it runs on 127.0.0.1:0.
//
// Binary: dist/hecate when it is newer than every source file (`bun run build`), otherwise a
// fresh `bun build --compile` into a temp folder, so the test never runs stale code.
import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { startUpstream } from "../helpers/hecate.ts";

const root = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "hecate-signals-"));

function newestSource(d: string): number {
  let t = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return t;
}

function binary(): string {
  const dist = join(root, "dist/hecate");
  try {
    if (statSync(dist).mtimeMs >= Math.max(newestSource(join(root, "src")), statSync(join(root, "package.json")).mtimeMs)) return dist;
  } catch {}
  const out = join(dir, "hecate");
  const r = Bun.spawnSync([process.execPath, "build", "--compile", "src/main.ts", "--outfile", out], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`build failed: ${r.stderr.toString()}`);
  return out;
}
const BIN = binary();

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Running {
  proc: ReturnType<typeof Bun.spawn>;
  url: string;
  adminUrl: string;
  port: number;
  /** Every JSON line written so far. */
  lines: Record<string, any>[];
  waitLine(pred: (l: Record<string, any>) => boolean, what: string, ms?: number): Promise<Record<string, any>>;
  exited: Promise<number>;
}

async function run(config: unknown, name: string): Promise<Running> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, JSON.stringify(config));
  const proc = Bun.spawn([BIN, "-config", file], { stdout: "pipe", stderr: "pipe", cwd: dir });
  const lines: Record<string, any>[] = [];
  const waiters = new Set<() => void>();
  (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {
          lines.push({ raw: line });
        }
      }
      for (const w of waiters) w();
    }
    for (const w of waiters) w();
  })();
  const waitLine = (pred: (l: Record<string, any>) => boolean, what: string, ms = 10_000) =>
    new Promise<Record<string, any>>((resolve, reject) => {
      const check = () => {
        const l = lines.find(pred);
        if (l) {
          waiters.delete(check);
          clearTimeout(t);
          resolve(l);
        }
      };
      const t = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no log line: ${what}; got:\n${lines.map((x) => JSON.stringify(x)).join("\n")}`));
      }, ms);
      waiters.add(check);
      check();
    });
  const pub = await waitLine((l) => l.msg === "listening" && l.listener === "public", "public listening");
  const adm = await waitLine((l) => l.msg === "listening" && l.listener === "admin", "admin listening");
  return {
    proc,
    url: `http://${pub.address}`,
    adminUrl: `http://${adm.address}`,
    port: Number(String(pub.address).split(":").pop()),
    lines,
    waitLine,
    exited: proc.exited,
  };
}

function config(routes: unknown[], proxy: Record<string, unknown> = {}) {
  return {
    admin: { listen: "127.0.0.1:0" },
    telemetry: { accessLog: false },
    proxy: { listen: "127.0.0.1:0", ...proxy, routes },
  };
}

async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out: ${what}`);
}

/** Does a TCP connect to the port succeed? */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

const A = startUpstream(() => new Response("A"));
const B = startUpstream(() => new Response("B"));
afterAll(() => {
  A.stop();
  B.stop();
});

test("SIGHUP reloads the file: a new route serves; an invalid file is logged and changes nothing", async () => {
  const h = await run(config([{ name: "a", pathPrefix: "/a", upstreams: [A.url] }]), "hup");
  try {
    expect(h.port).toBeGreaterThan(0);
    expect(await (await fetch(h.url + "/a")).text()).toBe("A");
    expect((await fetch(h.url + "/b")).status).toBe(404);

    writeFileSync(join(dir, "hup.yaml"), JSON.stringify(config([{ name: "a", pathPrefix: "/a", upstreams: [A.url] }, { name: "b", pathPrefix: "/b", upstreams: [B.url] }])));
    h.proc.kill("SIGHUP");
    const ok = await h.waitLine((l) => l.msg === "reload ok", "reload ok");
    expect(ok).toMatchObject({ reason: "SIGHUP", generation: 2, added: ["b"], removed: [], changed: [] });
    const r = await fetch(h.url + "/b");
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("B");

    writeFileSync(join(dir, "hup.yaml"), "proxy:\n  routes:\n    - name: a\n      pathPrefx: /x\n");
    h.proc.kill("SIGHUP");
    const bad = await h.waitLine((l) => l.msg === "reload failed", "reload failed");
    expect(bad.level).toBe("error");
    expect(bad.reason).toBe("SIGHUP");
    expect(bad.errors.map((e: any) => e.path)).toContain("proxy.routes[0].pathPrefx");
    expect(await (await fetch(h.url + "/b")).text()).toBe("B");
    const vars = (await (await fetch(h.adminUrl + "/debug/vars")).json()) as any;
    expect(vars.generation).toBe(2);
  } finally {
    h.proc.kill("SIGTERM");
  }
  expect(await h.exited).toBe(0);
}, 30_000);

test("SIGTERM: stop accepting, the slow in-flight response completes, exit 0", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const slow = startUpstream(() => {
    // headers and a first chunk now, the rest when the test says so
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(new TextEncoder().encode("first-"));
        await gate;
        c.enqueue(new TextEncoder().encode("last"));
        c.close();
      },
    });
    return new Response(body);
  });
  const h = await run(config([{ name: "slow", upstreams: [slow.url] }], { server: { shutdownTimeoutSec: 20 } }), "term");
  try {
    const res = await fetch(h.url + "/download");
    expect(res.status).toBe(200);
    const started = performance.now();
    h.proc.kill("SIGTERM");
    await h.waitLine((l) => l.msg === "shutdown", "shutdown line");
    // the public listener stops accepting; the admin one still answers, not ready
    await until(async () => !(await connects(h.port)), "public listener closed");
    const ready = await fetch(h.adminUrl + "/readyz");
    expect(ready.status).toBe(503);
    expect(await ready.text()).toBe("draining\n");
    const drain = (await (await fetch(h.adminUrl + "/admin/drain")).json()) as any;
    expect(drain).toEqual({ draining: true, inflight: 1 });
    expect(h.proc.exitCode).toBeNull();
    release();
    expect(await res.text()).toBe("first-last");
    expect(await h.exited).toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(h.lines.some((l) => l.msg === "stopped")).toBe(true);
    expect(h.lines.some((l) => l.msg === "shutdown timeout: closing in-flight requests")).toBe(false);
  } finally {
    release();
    h.proc.kill("SIGKILL");
    slow.stop();
  }
}, 30_000);

test("SIGINT is a graceful shutdown too", async () => {
  const h = await run(config([{ name: "a", upstreams: [A.url] }]), "int");
  expect(await (await fetch(h.url + "/")).text()).toBe("A");
  h.proc.kill("SIGINT");
  expect(await h.exited).toBe(0);
  expect(h.lines.find((l) => l.msg === "shutdown")?.reason).toBe("SIGINT");
  expect(h.lines.some((l) => l.msg === "stopped")).toBe(true);
}, 30_000);

test("shutdownTimeoutSec bounds the wait for a request that never ends", async () => {
  const stuck = startUpstream(() => new Promise<Response>(() => {}));
  const h = await run(config([{ name: "stuck", upstreams: [stuck.url] }], { server: { shutdownTimeoutSec: 1 }, retry: { perTryTimeoutSec: 0 } }), "timeout");
  try {
    const pending = fetch(h.url + "/").then(
      (r) => r.status,
      () => "failed",
    );
    await until(() => stuck.seen.length > 0, "upstream got the request");
    const started = performance.now();
    h.proc.kill("SIGTERM");
    expect(await h.exited).toBe(0);
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
    expect(h.lines.some((l) => l.msg === "shutdown timeout: closing in-flight requests")).toBe(true);
    expect(await pending).toBe("failed");
  } finally {
    h.proc.kill("SIGKILL");
    stuck.stop();
  }
}, 30_000);
