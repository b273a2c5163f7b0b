// GET /debug/vars and /debug/pprof/*: process numbers, CPU profiles and heap snapshots of
// this very process, for an operator with the admin credentials.
//
// CPU profile: `node:inspector`'s in-process Session (Bun implements the Profiler domain on
// JavaScriptCore's sampling profiler, also inside a `bun build --compile` binary). The answer
// is the `Profiler.Profile` object — `nodes`, `startTime`, `endTime`, `samples`,
// `timeDeltas` — which is the `.cpuprofile` format Chrome DevTools (Performance panel, "Load
// profile") and speedscope read. One profile at a time; a second request gets 409.
//
// Heap: `Bun.generateHeapSnapshot("v8")`, a V8 `.heapsnapshot` JSON document (the format of
// Chrome DevTools' Memory panel, "Load profile"). Taking it stops the process for a moment
// (tens of ms for a small heap), as it does in every runtime.
import type { Session as InspectorSession } from "node:inspector";
import type { Runtime } from "../runtime/runtime.ts";
import { json, text } from "./respond.ts";

export function debugVars(rt: Runtime): Response {
  const m = process.memoryUsage();
  return json({
    cmdline: process.argv,
    memstats: { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers },
    uptimeSec: Math.round((Date.now() - rt.startedAt) / 1000),
    generation: rt.gen.id,
    requests: rt.requests,
    inflight: rt.inflight,
  });
}

const INDEX = `<!doctype html>
<html><head><meta charset="utf-8"><title>hecate /debug/pprof/</title></head>
<body><h1>/debug/pprof/</h1>
<table>
<tr><td><a href="/debug/pprof/profile?seconds=10">profile?seconds=N</a></td><td>CPU profile of N seconds (1–60, default 30) as <code>.cpuprofile</code> JSON (nodes, samples, timeDeltas); open it in Chrome DevTools → Performance → Load profile, or in speedscope.</td></tr>
<tr><td><a href="/debug/pprof/heap">heap</a></td><td>Heap snapshot in V8 <code>.heapsnapshot</code> JSON; open it in Chrome DevTools → Memory → Load profile.</td></tr>
<tr><td><a href="/debug/vars">/debug/vars</a></td><td>Command line, memory, uptime, config generation, request counters as JSON.</td></tr>
</table></body></html>
`;

export function pprofIndex(): Response {
  return new Response(INDEX, { headers: { "content-type": "text/html; charset=utf-8" } });
}

let profiling = false;

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-");
}

export async function cpuProfile(req: Request): Promise<Response> {
  const q = req.url.indexOf("?");
  const raw = q < 0 ? null : new URLSearchParams(req.url.slice(q + 1)).get("seconds");
  const seconds = raw === null ? 30 : /^\d{1,2}$/.test(raw) ? Number(raw) : NaN;
  if (!(seconds >= 1 && seconds <= 60)) return text("seconds must be a whole number from 1 to 60", 400);
  if (profiling) return text("a CPU profile is already being taken; try again when it is done", 409);
  profiling = true;
  // loaded on first use, not with the admin API (see observability/prom.ts on what loading costs)
  const { Session } = require("node:inspector") as { Session: typeof InspectorSession };
  const session = new Session();
  try {
    session.connect();
    const post = <T = unknown>(method: string, params: object = {}) =>
      new Promise<T>((resolve, reject) => session.post(method, params, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res as T))));
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: 1000 }).catch(() => undefined); // µs; best effort
    await post("Profiler.start");
    await waitOrAbort(seconds * 1000, req.signal);
    const { profile } = await post<{ profile: unknown }>("Profiler.stop");
    await post("Profiler.disable").catch(() => undefined);
    if (req.signal.aborted) return text("client went away", 499);
    return new Response(JSON.stringify(profile), {
      headers: {
        "content-type": "application/json",
        "content-disposition": `attachment; filename="hecate-${process.pid}-${stamp()}.cpuprofile"`,
      },
    });
  } finally {
    session.disconnect();
    profiling = false;
  }
}

function waitOrAbort(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

export function heapSnapshot(): Response {
  const buf = Bun.generateHeapSnapshot("v8", "arraybuffer");
  return new Response(buf, {
    headers: {
      "content-type": "application/json",
      "content-disposition": `attachment; filename="hecate-${process.pid}-${stamp()}.heapsnapshot"`,
    },
  });
}
