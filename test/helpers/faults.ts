// Fault-injecting upstream fixtures for the resilience tests (retries, breaker, health,
// stickiness). Every fixture listens on 127.0.0.1:0, records what reached it, and is stopped
// by the test through `stop()`. Raw-socket fixtures use Bun.listen so that they can misbehave
// in ways an HTTP server library will not (answer half a body, then reset).
import type { Socket } from "bun";

export interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface Fixture {
  url: string;
  port: number;
  stop(): void;
}

/** Poll `cond` until it holds; throw after `ms` with `what` in the message. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

function record(req: Request, body: string): Seen {
  const headers: Record<string, string> = {};
  req.headers.forEach((v, k) => (headers[k] = v));
  const u = req.url;
  const p = u.indexOf("/", u.indexOf("//") + 2);
  return { method: req.method, path: p < 0 ? "/" : u.slice(p), headers, body };
}

export interface StatusUpstream extends Fixture {
  seen: Seen[];
  /** Replace the sequence; the next request gets `statuses[0]`. */
  setStatuses(statuses: number[]): void;
}

/**
 * Answers the i-th request with `statuses[i]` (the last one repeats), body = JSON
 * `{ i, port, status, method, path, body }`. `delayMs` delays every answer. Requests for
 * `healthPath` (when given) get 200 and are neither recorded nor counted.
 */
export function statusUpstream(statuses: number[], opts: { delayMs?: number; healthPath?: string } = {}): StatusUpstream {
  const seen: Seen[] = [];
  let seq = statuses;
  let base = 0;
  const server: ReturnType<typeof Bun.serve> = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    async fetch(req): Promise<Response> {
      if (opts.healthPath !== undefined && req.url.endsWith(opts.healthPath)) return new Response("ok\n");
      const body = await req.text();
      const i = seen.length;
      seen.push(record(req, body));
      if (opts.delayMs) await Bun.sleep(opts.delayMs);
      const k = i - base;
      const status = seq[Math.min(k, seq.length - 1)]!;
      return Response.json({ i, port: server.port, status, method: req.method, path: seen[i]!.path, body }, { status });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    port: server.port!,
    seen,
    setStatuses(s) {
      seq = s;
      base = seen.length;
    },
    stop: () => void server.stop(true),
  };
}

/** A URL whose port refuses connections: a listener on port 0 that was closed again. */
export function refusedUrl(): string {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return `http://127.0.0.1:${port}`;
}

export interface RawUpstream extends Fixture {
  /** Requests whose head was received. */
  count: number;
}

/**
 * A raw TCP upstream: once a request head has arrived, `onHead` writes whatever it likes to
 * the socket and ends or terminates it.
 */
export function rawUpstream(onHead: (s: Socket<{ buf: string }>, head: string) => void): RawUpstream {
  const fx: RawUpstream = { url: "", port: 0, count: 0, stop: () => {} };
  const l = Bun.listen<{ buf: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: "" };
      },
      data(s, chunk) {
        s.data.buf += chunk.toString("latin1");
        const end = s.data.buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = s.data.buf.slice(0, end);
        s.data.buf = "\u0000"; // ignore the rest (body, further requests)
        fx.count++;
        onHead(s, head);
      },
    },
  });
  fx.port = l.port;
  fx.url = `http://127.0.0.1:${l.port}`;
  fx.stop = () => l.stop(true);
  return fx;
}

/** Answers 200 with Content-Length `total` but sends only `sent` bytes, then resets. */
export function resetMidBody(total = 100000, sent = 1000): RawUpstream {
  return rawUpstream((s) => {
    s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\n\r\n`);
    s.write(Buffer.alloc(sent, 120));
    s.flush();
    setTimeout(() => s.terminate(), 20);
  });
}

/** Reads the request head and closes the connection without answering. */
export function resetBeforeHeaders(): RawUpstream {
  return rawUpstream((s) => s.terminate());
}

export interface SlowUpstream extends Fixture {
  seen: Seen[];
  /** Requests whose signal fired (the proxy aborted them). */
  aborted: number;
}

/** Waits `delayMs` before sending headers (after reading the body); records aborts. */
export function slowHeaders(delayMs: number): SlowUpstream {
  const fx: SlowUpstream = { url: "", port: 0, seen: [], aborted: 0, stop: () => {} };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    async fetch(req) {
      req.signal.addEventListener("abort", () => fx.aborted++);
      fx.seen.push(record(req, await req.text()));
      await Bun.sleep(delayMs);
      return new Response("slow\n");
    },
  });
  fx.port = server.port!;
  fx.url = `http://127.0.0.1:${server.port}`;
  fx.stop = () => void server.stop(true);
  return fx;
}

/** Byte i of a slow body: a pattern a test can rebuild. */
export function patternByte(i: number): number {
  return (i * 31 + (i >>> 13)) & 0xff;
}

/**
 * Headers at once, then `bytes` of `patternByte` in `chunkBytes` pieces spread evenly over
 * `durationMs`.
 */
export function slowBody(bytes: number, durationMs: number, chunkBytes = 64 * 1024): Fixture & { count: number } {
  const fx = { url: "", port: 0, count: 0, stop: () => {} };
  const chunks = Math.ceil(bytes / chunkBytes);
  const gap = durationMs / chunks;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    fetch() {
      fx.count++;
      let off = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (off >= bytes) return c.close();
          if (off > 0) await Bun.sleep(gap);
          const n = Math.min(chunkBytes, bytes - off);
          const b = new Uint8Array(n);
          for (let k = 0; k < n; k++) b[k] = patternByte(off + k);
          off += n;
          c.enqueue(b);
        },
      });
      return new Response(body, { headers: { "content-type": "application/octet-stream", "content-length": String(bytes) } });
    },
  });
  fx.port = server.port!;
  fx.url = `http://127.0.0.1:${server.port}`;
  fx.stop = () => void server.stop(true);
  return fx;
}

export interface HealthUpstream extends Fixture {
  /** What the health path answers now. */
  healthStatus: number;
  /** Delay of each health answer. */
  healthDelayMs: number;
  /** Health probes received, by path. */
  probes: { path: string; at: number }[];
  /** Highest number of probes in progress at once. */
  maxConcurrentProbes: number;
  /** Non-health requests served. */
  served: number;
}

/**
 * An upstream whose health endpoint (any path ending in `healthPath`) answers `healthStatus`
 * after `healthDelayMs`; every other path answers 200 with `{ port }`.
 */
export function healthUpstream(healthPath = "/healthz"): HealthUpstream {
  let inProbe = 0;
  const fx: HealthUpstream = {
    url: "",
    port: 0,
    healthStatus: 200,
    healthDelayMs: 0,
    probes: [],
    maxConcurrentProbes: 0,
    served: 0,
    stop: () => {},
  };
  const server: ReturnType<typeof Bun.serve> = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    async fetch(req): Promise<Response> {
      const u = req.url;
      const path = u.slice(u.indexOf("/", u.indexOf("//") + 2));
      if (path.endsWith(healthPath)) {
        fx.probes.push({ path, at: performance.now() });
        inProbe++;
        if (inProbe > fx.maxConcurrentProbes) fx.maxConcurrentProbes = inProbe;
        try {
          if (fx.healthDelayMs > 0) await Bun.sleep(fx.healthDelayMs);
          return new Response(fx.healthStatus < 300 ? "ok\n" : "bad\n", { status: fx.healthStatus });
        } finally {
          inProbe--;
        }
      }
      fx.served++;
      return Response.json({ port: server.port });
    },
  });
  fx.port = server.port!;
  fx.url = `http://127.0.0.1:${server.port}`;
  fx.stop = () => void server.stop(true);
  return fx;
}
