// The compiled binary under test (dist/hecate) and small helpers to run it.
//
// `npm test` builds first (`bun run build && bun test`); when the tests are run on their own,
// ensureBinary() rebuilds dist/hecate if it is missing or older than any source file, so a
// test never exercises a stale binary.
import { existsSync, statSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const root = join(import.meta.dir, "..", "..");
export const bin = join(root, "dist", "hecate");

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

export function ensureBinary(): void {
  const sources = Math.max(newestSource(join(root, "src")), statSync(join(root, "package.json")).mtimeMs);
  if (existsSync(bin) && statSync(bin).mtimeMs >= sources) return;
  const r = Bun.spawnSync([process.execPath, "run", "build"], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bun run build failed:\n${r.stdout.toString()}${r.stderr.toString()}`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the binary to completion (commands that exit by themselves). */
export async function runHecate(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const p = Bun.spawn([bin, ...args], { cwd: opts.cwd ?? root, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A running Hecate whose JSON log lines on stdout are collected as they come. */
export class RunningHecate {
  readonly lines: Record<string, any>[] = [];
  stderr = "";
  private readonly done: Promise<number>;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    const out = this.collect(proc.stdout, (line) => {
      try {
        this.lines.push(JSON.parse(line));
      } catch {
        this.lines.push({ raw: line });
      }
    });
    const err = this.collect(proc.stderr, (line) => (this.stderr += line + "\n"));
    this.done = Promise.all([out, err, proc.exited]).then(([, , code]) => code);
  }

  private async collect(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    if (buf) onLine(buf);
  }

  /** The first log line matching `pred`, waiting for it up to `timeoutMs`. */
  async waitFor(pred: (l: Record<string, any>) => boolean, what: string, timeoutMs = 10_000): Promise<Record<string, any>> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null)
        throw new Error(`hecate exited (${this.proc.exitCode ?? this.proc.signalCode}) before logging ${what}; stderr: ${this.stderr}; stdout: ${JSON.stringify(this.lines)}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; stdout: ${JSON.stringify(this.lines)}`);
      await Bun.sleep(10);
    }
  }

  /** The address ("host:port") of a listener, from its "listening" log line. */
  async address(listener: "public" | "admin"): Promise<string> {
    const l = await this.waitFor((x) => x.msg === "listening" && x.listener === listener, `the ${listener} "listening" line`);
    return l.address as string;
  }

  /** Exit code (SIGKILL after `timeoutMs`). */
  async exited(timeoutMs = 20_000): Promise<number> {
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs);
    try {
      return await this.done;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    return this.exited();
  }
}

export function startHecateBinary(args: string[], opts: { cwd?: string } = {}): RunningHecate {
  return new RunningHecate(Bun.spawn([bin, ...args], { cwd: opts.cwd ?? root, stdout: "pipe", stderr: "pipe", stdin: "ignore" }));
}
