// A worker thread for workers-state.test.ts: hammers one shared rate-limit bucket or one shared
// breaker slot, concurrently with its twin, and reports what it saw.
import { parentPort } from "node:worker_threads";
import { SharedRateTable, SharedRateLimiterStore } from "../../src/policy/shared-store.ts";
import { rateSpec } from "../../src/policy/token-bucket.ts";
import { SharedState, type SharedBuffers } from "../../src/runtime/shared-state.ts";
import { UpstreamRegistry } from "../../src/upstream/registry.ts";

type Job =
  | { kind: "bucket"; table: ConstructorParameters<typeof SharedRateTable>[0]; takes: number; start: Int32Array }
  | { kind: "breaker"; buffers: SharedBuffers; id: number; failures: number; start: Int32Array };

parentPort!.on("message", (job: Job) => {
  // both threads start together
  Atomics.add(job.start, 0, 1);
  while (Atomics.load(job.start, 0) < 2);
  if (job.kind === "bucket") {
    const store = new SharedRateLimiterStore(new SharedRateTable(job.table), "rule race", rateSpec(0.001, 50_000));
    let ok = 0;
    for (let i = 0; i < job.takes; i++) if (store.take("k", performance.now()).ok) ok++;
    parentPort!.postMessage({ ok });
  } else {
    const shared = new SharedState(job.buffers, job.id);
    shared.setSlotMaps({ urls: [["http://u:1", 0]], origins: [["http://u:1", 0]] });
    const reg = new UpstreamRegistry();
    shared.attachRegistry(reg, "worker");
    const transitions: string[] = [];
    reg.onBreakerChange = (_o, from, to) => transitions.push(`${from}>${to}`);
    const s = reg.get("http://u:1", "http://u:1", { enabled: true, openAfterConsecutiveFailures: 50, cooldownMs: 60_000, halfOpenMaxRequests: 1 });
    for (let i = 0; i < job.failures; i++) s.breaker.onFailure(s.breaker.onSend(), Date.now());
    parentPort!.postMessage({ transitions, state: s.breaker.state });
  }
});
