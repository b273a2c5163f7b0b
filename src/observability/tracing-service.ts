// Turns tracing on for runtimes whose config names an OTLP endpoint. OpenTelemetry (tracing.ts
// and the SDK under it) is imported only then, so a process that does not trace does not load
// it. (Measured: no change in Hecate's GC pauses — the exporters, which are much larger, were
// already imported on demand.)
import { services } from "../runtime/start.ts";
import { resolveExporterTarget } from "./tracing-target.ts";

let mod: Promise<typeof import("./tracing.ts")> | null = null;

services.push({
  async start(rt) {
    const target = resolveExporterTarget(rt.gen.compiled.config.telemetry);
    if (target === null) return;
    await (await (mod ??= import("./tracing.ts"))).startTracing(rt, target);
  },
  async stop(rt) {
    if (mod !== null) await (await mod).stopTracing(rt);
  },
});
