// Wires metrics.ts into the pipeline hooks and serves GET /metrics on the admin listener.
// Each hook wraps the previous function (other modules listen too) instead of replacing it.
import { hooks } from "../pipeline/hooks.ts";
import { adminRoute } from "../admin/server.ts";
import type { Runtime } from "../runtime/runtime.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import { contentType, exposition, onGeneration, recordAttempt, recordDenied, recordFinish, recordReload, recordRetry, recordStoreError } from "./metrics.ts";

/** Exchanges whose denial the `denied` hook already counted (rare path: only denials). */
const deniedCounted = new WeakSet<Exchange>();

const prevFinish = hooks.finish;
hooks.finish = function metricsFinish(ex, durMs) {
  prevFinish(ex, durMs);
  recordFinish(ex, durMs);
  // a policy stage that only sets ex.denied (and does not call hooks.denied) is counted here
  if (ex.denied !== "" && !deniedCounted.has(ex)) recordDenied(ex, ex.denied);
};

const prevAttempt = hooks.upstreamAttempt;
hooks.upstreamAttempt = function metricsAttempt(ex, t, outcome, ms, status, token) {
  prevAttempt(ex, t, outcome, ms, status, token);
  recordAttempt(ex, t, outcome, ms);
};

const prevRetry = hooks.retry;
hooks.retry = function metricsRetry(ex, route, reason) {
  prevRetry(ex, route, reason);
  recordRetry(route, reason);
};

const prevDenied = hooks.denied;
hooks.denied = function metricsDenied(ex, policy) {
  prevDenied(ex, policy);
  recordDenied(ex, policy);
  deniedCounted.add(ex);
};

const prevReload = hooks.reload;
hooks.reload = function metricsReload(ok, generation) {
  prevReload(ok, generation);
  recordReload(ok);
};

const prevGeneration = hooks.generation;
hooks.generation = function metricsGeneration(rt) {
  prevGeneration(rt);
  onGeneration(rt as Runtime);
};

const prevStoreError = hooks.rateLimitStoreError;
hooks.rateLimitStoreError = function metricsStoreError(result) {
  prevStoreError(result);
  recordStoreError(result);
};

const HEADERS = { "content-type": contentType };

adminRoute("/metrics", {
  GET: async (_req, rt) => new Response(await exposition(rt), { headers: HEADERS }),
});
