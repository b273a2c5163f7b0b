// Hecate as a child process (bun src/main.ts) for the abuse tests: its RSS can be read on its
// own (/proc/<pid>/status), and its event loop is not shared with the test's attack clients,
// so a probe's latency is the proxy's, not the test's.
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import type { Subprocess } from "bun";

const root = join(import.meta.dir, "..", "..");

export interface HecateProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  adminPort: number;
  url: string;
  adminUrl: string;
  /** Resident set size of the Hecate process, bytes. */
  rss(): number;
  /** Log lines seen so far (JSON objects). */
  lines: Record<string, any>[];
  stop(): Promise<void>;
}

export async function startHecateProcess(yaml: string): Promise<HecateProcess> {
  const dir = mkdtempSync(join(tmpdir(), "hecate-hostile-"));
  const file = join(dir, "config.yaml");
  writeFileSync(file, yaml);
  const proc = Bun.spawn([process.execPath, join(root, "src", "main.ts"), `-config=${file}`], {
    cwd: root,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: Record<string, any>[] = [];
  let stderr = "";
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(l));
        } catch {
          lines.push({ raw: l });
        }
      }
    }
  })();
  void (async () => {
    for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  const deadline = performance.now() + 15_000;
  let pub: string | undefined;
  let adm: string | undefined;
  while (pub === undefined || adm === undefined) {
    if (performance.now() > deadline || proc.exitCode !== null) {
      proc.kill("SIGKILL");
      throw new Error(`hecate did not start: ${stderr}\n${JSON.stringify(lines)}`);
    }
    pub ??= lines.find((l) => l.msg === "listening" && l.listener === "public")?.address;
    adm ??= lines.find((l) => l.msg === "listening" && l.listener === "admin")?.address;
    await Bun.sleep(10);
  }
  const port = Number(pub.slice(pub.lastIndexOf(":") + 1));
  const adminPort = Number(adm.slice(adm.lastIndexOf(":") + 1));
  return {
    proc,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    lines,
    rss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"));
      return m ? Number(m[1]) * 1024 : 0;
    },
    async stop() {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One probe: a new connection, a GET, the whole response; returns the milliseconds it took
 * (Infinity when it failed or took longer than `timeoutMs`).
 */
export function probe(port: number, path = "/probe", timeoutMs = 2000): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok ? performance.now() - t0 : Infinity);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on("error", () => done(false));
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.startsWith("HTTP/1.1 200") && got.endsWith("\r\n\r\nprobe ok\n")) done(true);
    });
    s.on("close", () => done(got.startsWith("HTTP/1.1 200") && got.endsWith("probe ok\n")));
    s.write(`GET ${path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n`);
  });
}

/** Probe every `everyMs` until `stop()` is called; returns the latencies. */
export function probeLoop(port: number, everyMs = 50): { stop(): Promise<number[]> } {
  const lat: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      lat.push(await probe(port));
      await Bun.sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return lat;
    },
  };
}

export function summary(lat: number[]): { n: number; p50: number; p99: number; max: number } {
  const s = [...lat].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { n: s.length, p50: +q(0.5).toFixed(2), p99: +q(0.99).toFixed(2), max: +(s[s.length - 1] ?? NaN).toFixed(2) };
}
