// Soak: mixed traffic through the compiled proxy for SOAK_SEC seconds (default 600) with the
// proxy's RSS sampled every second. Prints the RSS slope after warm-up and the error counts.
//
//   bun run build && bun bench/soak.ts            # 10 minutes
//   SOAK_SEC=60 bun bench/soak.ts                 # a quick look
//
// Traffic (all on loopback, bounded rate): HTTP/1.1 keep-alive GETs and POSTs, HTTP/2 (TLS,
// node:http2 client), WebSocket echo sessions, requests to a route whose upstream fails one
// time in three (retries), an upstream that goes down and comes back every 20 s (health
// checks, breaker), and a config reload (SIGHUP) every 5 s.
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http2 from "node:http2";

const ROOT = join(import.meta.dir, "..");
const BIN = process.env.HECATE_BIN ?? join(ROOT, "dist", "hecate");
const SOAK_SEC = Number(process.env.SOAK_SEC ?? 600);
const WARMUP_SEC = Math.min(60, Math.floor(SOAK_SEC / 5));
const dir = mkdtempSync(join(tmpdir(), "hecate-soak-"));

// --- upstreams -------------------------------------------------------------------------
const body1k = "x".repeat(1024);
const stable = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req, server) {
    const p = new URL(req.url).pathname;
    if (p === "/ws" && server.upgrade(req)) return undefined;
    if (req.method === "POST") return req.arrayBuffer().then((b) => new Response(String(b.byteLength)));
    return new Response(body1k);
  },
  websocket: { message: (ws, m) => void ws.send(m) },
});
let n = 0;
const flaky = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => (++n % 3 === 0 ? new Response("no", { status: 503 }) : new Response("ok")) });
let flapPort = 0;
let flap: ReturnType<typeof Bun.serve> | null = null;
const startFlap = () => (flap = Bun.serve({ port: flapPort, hostname: "127.0.0.1", reusePort: true, fetch: () => new Response("flap") }));
startFlap();
flapPort = flap!.port!;

// --- proxy -----------------------------------------------------------------------------
const cert = join(dir, "c.pem");
const key = join(dir, "k.pem");
const cfg = join(dir, "soak.yaml");
let gen = 0;
function writeConfig(): void {
  gen++;
  writeFileSync(
    cfg,
    `# generation ${gen}
admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  health: { intervalSec: 1, timeoutSec: 1, failThreshold: 2, successReset: 1, path: /health }
  retry: { maxRetries: 2, backoffBaseMs: 5, backoffMaxMs: 20 }
  circuitBreaker: { openAfterConsecutiveFailures: 5, cooldownSec: 2 }
  policy: { rateLimit: { rps: 100000, burst: 100000 } }
  routes:
    - { name: main, pathPrefix: /, upstreams: ["http://127.0.0.1:${stable.port}"] }
    - { name: retry, pathPrefix: /retry, upstreams: ["http://127.0.0.1:${flaky.port}", "http://127.0.0.1:${stable.port}"] }
    - { name: flap, pathPrefix: /flap, upstreams: ["http://127.0.0.1:${flapPort}", "http://127.0.0.1:${stable.port}"] }
    - { name: r${gen % 7}, pathPrefix: /gen, upstreams: ["http://127.0.0.1:${stable.port}"] }
tls: { certFiles: ["${cert}"], keyFiles: ["${key}"], selfSigned: true }
telemetry: { accessLog: false, logLevel: info }
`,
  );
}
writeConfig();
const proc = Bun.spawn([BIN, `-config=${cfg}`], { stdout: "pipe", stderr: "inherit" });
const lines: string[] = [];
let base = "";
{
  const dec = new TextDecoder();
  let buf = "";
  (async () => {
    for await (const c of proc.stdout) {
      buf += dec.decode(c, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(l);
        if (lines.length > 1000) lines.shift();
        try {
          const j = JSON.parse(l);
          if (j.msg === "listening" && j.listener === "public") base = `https://${j.address}`;
        } catch {}
      }
    }
  })();
  const t0 = performance.now();
  while (base === "" && performance.now() - t0 < 10_000) await Bun.sleep(20);
  if (base === "") throw new Error("proxy did not start: " + lines.join("\n"));
}
const tlsOpt = { tls: { rejectUnauthorized: false } } as RequestInit;

// --- load ------------------------------------------------------------------------------
const counts: Record<string, { ok: number; bad: number; err: number }> = {};
const count = (k: string, ok: boolean | null) => {
  const c = (counts[k] ??= { ok: 0, bad: 0, err: 0 });
  if (ok === null) c.err++;
  else if (ok) c.ok++;
  else c.bad++;
};
let running = true;
const deadline = performance.now() + SOAK_SEC * 1000;

async function h1Loop(path: string, kind: string, opts: RequestInit = {}) {
  while (running) {
    try {
      const r = await fetch(base + path, { ...tlsOpt, ...opts });
      await r.arrayBuffer();
      count(kind, r.status < 500);
    } catch {
      count(kind, null);
    }
    await Bun.sleep(2);
  }
}
async function h2Loop() {
  while (running) {
    const s = http2.connect(base, { rejectUnauthorized: false });
    s.on("error", () => {});
    for (let i = 0; i < 200 && running; i++) {
      const ok = await new Promise<boolean | null>((resolve) => {
        const st = s.request({ ":path": "/h2" });
        let status = 0;
        st.on("response", (h) => (status = Number(h[":status"])));
        st.on("data", () => {});
        st.on("end", () => resolve(status === 200));
        st.on("error", () => resolve(null));
        st.end();
      });
      count("h2", ok);
      await Bun.sleep(2);
    }
    s.close();
  }
}
async function wsLoop() {
  while (running) {
    const ok = await new Promise<boolean | null>((resolve) => {
      const ws = new WebSocket(base.replace("https", "wss") + "/ws", { tls: { rejectUnauthorized: false } } as never);
      let got = 0;
      ws.onopen = () => {
        for (let i = 0; i < 50; i++) ws.send(i % 2 ? "text message" : new Uint8Array(1000));
      };
      ws.onmessage = () => {
        if (++got === 50) ws.close(1000);
      };
      ws.onclose = (e) => resolve(got === 50 && e.code === 1000);
      ws.onerror = () => resolve(null);
    });
    count("ws", ok);
    await Bun.sleep(50);
  }
}

const rss: [number, number][] = [];
const t0 = performance.now();
const sampler = setInterval(() => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"));
  if (m) rss.push([(performance.now() - t0) / 1000, Number(m[1]) / 1024]);
}, 1000);
const reloader = setInterval(() => {
  writeConfig();
  proc.kill("SIGHUP");
}, 5000);
const flapper = setInterval(() => {
  if (flap) {
    flap.stop(true);
    flap = null;
  } else startFlap();
}, 10_000);

const loops = [
  h1Loop("/", "h1-get"),
  h1Loop("/", "h1-get"),
  h1Loop("/post", "h1-post", { method: "POST", body: "y".repeat(4096) }),
  h1Loop("/retry/x", "retry"),
  h1Loop("/flap/x", "flap"),
  h1Loop("/gen/x", "gen"),
  h2Loop(),
  wsLoop(),
];
while (performance.now() < deadline) await Bun.sleep(500);
running = false;
clearInterval(reloader);
clearInterval(flapper);
await Promise.all(loops);
clearInterval(sampler);
proc.kill("SIGTERM");
const code = await proc.exited;
stable.stop(true);
flaky.stop(true);
(flap as ReturnType<typeof Bun.serve> | null)?.stop(true);

// least-squares slope of RSS (MiB) over time (min) after warm-up
const pts = rss.filter(([t]) => t >= WARMUP_SEC);
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const ts = pts.map((p) => p[0] / 60);
const ys = pts.map((p) => p[1]);
const mt = mean(ts);
const my = mean(ys);
const slope = ts.reduce((s, t, i) => s + (t - mt) * (ys[i]! - my), 0) / ts.reduce((s, t) => s + (t - mt) ** 2, 0);
const result = {
  seconds: SOAK_SEC,
  warmupSec: WARMUP_SEC,
  rssMiB: { start: rss[0]?.[1], afterWarmup: pts[0]?.[1], end: rss.at(-1)?.[1], max: Math.max(...rss.map((r) => r[1])) },
  rssSlopeMiBPerMin: Math.round(slope * 1000) / 1000,
  reloads: gen - 1,
  counts,
  exitCode: code,
};
console.log(JSON.stringify(result, null, 2));
