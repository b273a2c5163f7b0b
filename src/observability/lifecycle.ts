// Lifecycle settings that follow the serving generation: `telemetry.logLevel` is applied again
// at every reload (start.ts applies it once at start). The lifecycle events themselves (SPEC §5:
// listeners, reload ok/failed, ejected/restored, breaker transitions, drain on/off, shutdown)
// are logged where they happen: listeners.ts, reload.ts, health.ts, breaker.ts, admin/server.ts,
// start.ts; tracing.ts logs "tracing on" and export failures.
import { hooks } from "../pipeline/hooks.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { setLogLevel } from "./log.ts";

const prevGeneration = hooks.generation;
hooks.generation = function lifecycleGeneration(rt) {
  prevGeneration(rt);
  setLogLevel((rt as Runtime).gen.compiled.config.telemetry.logLevel);
};
