// The per-attempt cancel signal (src/upstream/attempt-signal.ts): listeners, deadlines swept by
// one timer (an earlier deadline armed after a later one still fires on time), fetch bridging.
import { expect, test } from "bun:test";
import { AttemptSignal, armedAttempts, toAbortSignal } from "../../src/upstream/attempt-signal.ts";
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
