// The per-attempt cancel signal (src/upstream/attempt-signal.ts): listeners, deadlines swept by
// one timer (an earlier deadline armed after a later one still fires on time), fetch bridging.
import { afterAll, describe, expect, test } from "bun:test";
import { AttemptSignal, CLIENT_WATCH_MS, armedAttempts, toAbortSignal } from "../../src/upstream/attempt-signal.ts";
import { ProxyError } from "../../src/errors.ts";

function aborted(s: AttemptSignal): Promise<number> {
  return new Promise((resolve) => s.addEventListener("abort", () => resolve(performance.now())));
}

test("listeners: functions and handleEvent objects, each once; removed ones and late ones are not called", () => {
  const s = new AttemptSignal();
  const calls: string[] = [];
  const a = () => calls.push("a");
  const b = { handleEvent: () => calls.push("b") };
  const c = () => calls.push("c");
  s.addEventListener("abort", a);
  s.addEventListener("abort", b);
  s.addEventListener("abort", c);
  s.removeEventListener("abort", c);
  s.abort(new ProxyError("client_gone", "gone", { source: "downstream" }));
  s.abort(new ProxyError("timeout", "again"));
  s.addEventListener("abort", () => calls.push("late"));
  expect(calls).toEqual(["a", "b"]);
  expect(s.aborted).toBe(true);
  expect(s.reason!.code).toBe("client_gone");
});

test("deadlines: each attempt times out at its own deadline, in any arming order; disarmed ones never", async () => {
  const t0 = performance.now();
  const late = new AttemptSignal();
  const early = new AttemptSignal();
  const never = new AttemptSignal();
  late.armAt(t0 + 250);
  never.armAt(t0 + 100);
  early.armAt(t0 + 60); // earlier than the timer already aimed at t0+100
  never.disarm();
  const [e, l] = await Promise.all([aborted(early), aborted(late)]);
  expect(e - t0).toBeGreaterThanOrEqual(59);
  expect(e - t0).toBeLessThan(200);
  expect(l - t0).toBeGreaterThanOrEqual(249);
  expect(early.reason!.code).toBe("timeout");
  expect(late.reason!.code).toBe("timeout");
  expect(never.aborted).toBe(false);
  expect(armedAttempts()).toBe(0);
});

test("an abort before the deadline takes the attempt out of the deadline set", () => {
  const s = new AttemptSignal();
  s.armAt(performance.now() + 60_000);
  expect(armedAttempts()).toBe(1);
  s.abort(new ProxyError("client_gone", "gone", { source: "downstream" }));
  expect(armedAttempts()).toBe(0);
});

test("many attempts, disarmed out of order: the rest still time out, each at its own deadline", async () => {
  const t0 = performance.now();
  const all = Array.from({ length: 40 }, (_, i) => {
    const s = new AttemptSignal();
    s.armAt(t0 + 40 + (i % 4) * 20);
    return s;
  });
  expect(armedAttempts()).toBe(40);
  // take out every third one, from the middle and both ends of the list
  const gone = all.filter((_, i) => i % 3 === 0);
  for (const s of [...gone].reverse()) s.disarm();
  const kept = all.filter((_, i) => i % 3 !== 0);
  expect(armedAttempts()).toBe(kept.length);
  const at = await Promise.all(kept.map(aborted));
  kept.forEach((s, k) => {
    const i = all.indexOf(s);
    expect(s.reason!.code).toBe("timeout");
    expect(at[k]! - t0).toBeGreaterThanOrEqual(39 + (i % 4) * 20);
  });
  expect(gone.every((s) => !s.aborted)).toBe(true);
  expect(armedAttempts()).toBe(0);
});

test("toAbortSignal follows the attempt with the same reason", () => {
  const s = new AttemptSignal();
  const sig = toAbortSignal(s);
  expect(sig.aborted).toBe(false);
  const why = new ProxyError("timeout", "upstream timed out");
  s.abort(why);
  expect(sig.aborted).toBe(true);
  expect(sig.reason).toBe(why);
  const native = new AbortController().signal;
  expect(toAbortSignal(native)).toBe(native);
});

describe("watching the client", () => {
  // A real server: each request gets an attempt that watches its client; the test learns how
  // (and whether) each attempt ended.
  const ended = new Map<string, (r: { code: string; at: number }) => void>();
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const id = new URL(req.url).pathname.slice(1);
      const s = new AttemptSignal();
      const watchFrom = Number(req.headers.get("x-watch-ms") ?? CLIENT_WATCH_MS);
      s.watch(req, performance.now() + watchFrom);
      const timeout = req.headers.get("x-timeout-ms");
      if (timeout !== null) s.armAt(performance.now() + Number(timeout));
      await aborted(s);
      ended.get(id)?.({ code: s.reason!.code, at: performance.now() });
      return new Response("late");
    },
  });
  afterAll(() => server.stop(true));

  function endOf(id: string) {
    return new Promise<{ code: string; at: number }>((r) => ended.set(id, r));
  }
  async function leaveAfter(id: string, headers: string, leave: Promise<unknown>) {
    const sock = await Bun.connect({ hostname: "127.0.0.1", port: server.port!, socket: { data() {} } });
    sock.write(`GET /${id} HTTP/1.1\r\nHost: t\r\n${headers}\r\n`);
    await leave;
    const left = performance.now();
    sock.end();
    return left;
  }

  test("a client gone before the watch starts: client_gone when it starts", async () => {
    const end = endOf("early");
    const t0 = performance.now();
    await leaveAfter("early", "x-watch-ms: 150\r\n", Promise.resolve());
    const r = await end;
    expect(r.code).toBe("client_gone");
    expect(r.at - t0).toBeGreaterThanOrEqual(149);
  });

  test("a client gone after the watch started: client_gone at once", async () => {
    const end = endOf("late");
    const watching = new Promise((r) => setTimeout(r, 60)); // past the 10 ms watch start
    const left = await leaveAfter("late", "x-watch-ms: 10\r\n", watching);
    const r = await end;
    expect(r.code).toBe("client_gone");
    expect(r.at - left).toBeLessThan(50);
  });

  test("a deadline before the watch starts is a timeout; a client still there is not gone", async () => {
    const end = endOf("deadline");
    const t0 = performance.now();
    const sock = await Bun.connect({ hostname: "127.0.0.1", port: server.port!, socket: { data() {} } });
    sock.write("GET /deadline HTTP/1.1\r\nHost: t\r\nx-watch-ms: 500\r\nx-timeout-ms: 40\r\n\r\n");
    const r = await end;
    expect(r.code).toBe("timeout");
    expect(r.at - t0).toBeLessThan(400);
    sock.end();
  });
});
