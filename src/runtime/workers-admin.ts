// The admin endpoints of a process with several workers (src/runtime/workers.ts): /metrics and
// /admin/stats are one exposition for the whole process — the main thread asks every worker
// for its counters at scrape time and merges them (counters and histograms add up; gauges of
// live state come from the main thread, which reads the shared state) — and /debug/vars lists
// the workers. Each handler falls back to the single-thread answer for a runtime started
// without workers (tests run several runtimes in one process).
import type { Runtime } from "./runtime.ts";
import type { Control } from "./workers.ts";
import type { CollectorData } from "./worker-entry.ts";
import { adminRoute, json, text } from "../admin/server.ts";
import { debugVars } from "../admin/debug.ts";
import { Collector, RouteSeries, WINDOW, BINS, collectorFor, statsDocument } from "../admin/stats.ts";
import { contentType, exposition, metricsJson } from "../observability/metrics.ts";
import { aggregatorRegistry } from "../observability/prom.ts";

/** The control plane of each runtime started with workers. */
export const controls = new WeakMap<Runtime, Control>();

/** Merge the workers' request statistics into one collector (seconds that match add up). */
export function mergeCollectors(since: number, parts: CollectorData[]): Collector {
  const out = new Collector();
  (out as { since: number }).since = since;
  for (const p of parts) {
    if (out.publicPort === 0) out.publicPort = p.publicPort;
    for (const [k, v] of p.protocols) out.protocols.set(k, (out.protocols.get(k) ?? 0) + v);
    for (const [name, s] of p.routes) {
      let m = out.routes.get(name);
      if (m === undefined) out.routes.set(name, (m = new RouteSeries()));
      for (let i = 0; i < WINDOW; i++) {
        const st = s.stamp[i]!;
        if (st < 0 || st < m.stamp[i]!) continue;
        if (st > m.stamp[i]!) {
          m.stamp[i] = st;
          m.count[i] = 0;
          m.errors[i] = 0;
          m.denied[i] = 0;
          m.hist.fill(0, i * BINS, i * BINS + BINS);
        }
        m.count[i]! += s.count[i]!;
        m.errors[i]! += s.errors[i]!;
        m.denied[i]! += s.denied[i]!;
        for (let b = i * BINS; b < i * BINS + BINS; b++) m.hist[b]! += s.hist[b]!;
      }
      m.total += s.total;
      m.totalErrors += s.totalErrors;
      m.totalDenied += s.totalDenied;
      m.last = Math.max(m.last, s.last);
    }
  }
  return out;
}

const METRICS_HEADERS = { "content-type": contentType };
const NO_STORE = { "content-type": "application/json", "cache-control": "no-store" };

adminRoute("/metrics", {
  GET: async (_req, rt) => {
    const ctl = controls.get(rt);
    if (ctl === undefined) return new Response(await exposition(rt), { headers: METRICS_HEADERS });
    const [own, parts] = await Promise.all([metricsJson(rt), ctl.collect()]);
    const merged = aggregatorRegistry().aggregate([own, ...parts.metrics] as never);
    return new Response(await merged.metrics(), { headers: METRICS_HEADERS });
  },
});

adminRoute("/admin/stats", {
  GET: async (req, rt) => {
    const ctl = controls.get(rt);
    const host = req.headers.get("host") ?? "";
    const doc = ctl === undefined ? statsDocument(rt, host) : statsDocument(rt, host, mergeCollectors(collectorFor(rt).since, (await ctl.collect()).stats));
    return json(doc, 200, NO_STORE);
  },
});

adminRoute("/debug/vars", {
  GET: async (_req, rt) => {
    const ctl = controls.get(rt);
    if (ctl === undefined) return debugVars(rt);
    await ctl.sync();
    const res = debugVars(rt);
    const body = (await res.json()) as Record<string, unknown>;
    body.workers = ctl.slots.map((s) => ({
      id: s.id,
      running: s.ready,
      requests: ctl.shared.workerRequests(s.id),
      inflight: ctl.shared.workerInflight(s.id),
      restarts: s.restarts,
    }));
    return json(body);
  },
});

if (process.env.HECATE_DEBUG_WORKER === "1")
  // Debug only: make worker N throw an uncaught exception (to see it restarted).
  adminRoute("/debug/worker-crash", {
    POST: async (req, rt) => {
      const ctl = controls.get(rt);
      if (ctl === undefined) return text("not running with several workers", 404);
      const id = Number((await req.text()).trim());
      const slot = ctl.slots.find((s) => s.id === id);
      if (slot === undefined || slot.worker === null) return text(`no running worker ${JSON.stringify(id)}`, 400);
      ctl.post(slot, { t: "crash" });
      return json({ crashed: id });
    },
  });
