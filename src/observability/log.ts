// JSON lines on stdout. Lines are queued and written in batches after the current turn of the
// event loop, so logging never blocks (or even waits on) the request path.

export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let minRank = RANK.info;
let queue: string[] = [];
let scheduled = false;
const sink = Bun.stdout.writer({ highWaterMark: 1 << 16 });

/**
 * Where a worker thread's batches go instead of stdout (src/runtime/worker-entry.ts posts them
 * to the main thread, the one writer of stdout, so lines of several threads never interleave).
 */
let redirect: ((text: string) => void) | null = null;

export function redirectLogs(to: ((text: string) => void) | null): void {
  redirect = to;
}

function flush(): void {
  scheduled = false;
  if (queue.length === 0) return;
  const text = queue.join("");
  queue = [];
  if (redirect !== null) return redirect(text);
  if (stdoutBroken) return;
  try {
    sink.write(text);
    const p = sink.flush();
    if (p instanceof Promise) p.catch(onStdoutError);
  } catch (e) {
    onStdoutError(e);
  }
}

/**
 * stdout went away (EPIPE: the log reader died). A proxy keeps serving without its log: lines
 * are dropped from then on, and the loss is reported once on stderr.
 */
let stdoutBroken = false;
function onStdoutError(e: unknown): void {
  if (stdoutBroken) return;
  stdoutBroken = true;
  try {
    process.stderr.write(`hecate: stdout is not writable (${(e as Error).message}); log lines are dropped from now on\n`);
  } catch {
    // stderr is gone too
  }
}

/** Write lines that are already serialised and end with a newline (a worker's batch). */
export function writeLines(text: string): void {
  queue.push(text);
  schedule();
}

function schedule(): void {
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

export function setLogLevel(level: Level): void {
  minRank = RANK[level];
}

export function levelEnabled(level: Level): boolean {
  return RANK[level] >= minRank;
}

/** RFC 3339 with milliseconds, UTC. */
export function isoNow(): string {
  return new Date().toISOString();
}

/** A lifecycle or diagnostic event. `fields` must be JSON-serialisable. */
export function log(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (RANK[level] < minRank) return;
  const line = fields ? JSON.stringify({ time: isoNow(), level, msg, ...fields }) : JSON.stringify({ time: isoNow(), level, msg });
  queue.push(line + "\n");
  schedule();
}

/** A pre-serialised line (the access log builds its own JSON for speed). */
export function writeLine(json: string): void {
  queue.push(json + "\n");
  schedule();
}

/** Write everything queued now (shutdown). */
export function flushLogs(): void {
  flush();
}
