// Active health checks (SPEC §3.5), a background service of the runtime.
//
// One prober per distinct upstream URL (CompiledConfig.upstreamUrls), however many routes use
// it: `GET <upstream base><health.path>` through the runtime's transport, first probe at
// start, then one probe per `intervalSec`. A probe of one upstream never overlaps the previous
// one: the next starts `intervalSec` after the previous STARTED, or as soon as it ends when it
// took longer (a slow probe delays the next). `failThreshold` consecutive failures eject the
// upstream, `successReset` consecutive successes restore it; the verdicts live in the
// upstream's `UpstreamState` in the registry, so they survive reloads.
//
// On every new generation the plan is recomputed: probers of URLs that are gone stop (their
// in-flight probe is aborted); URLs that stay keep their prober and counters and pick up
// changed settings (a changed path/interval/timeout/expectation aborts the probe in flight and
// probes again at once); new URLs get a prober that probes at once. Turning checks off
// (`intervalSec: 0`) stops every prober and restores the upstreams they had ejected, since
// nothing would ever restore them otherwise. Shutdown stops everything.
//
// A probe fails on a transport error, on the timeout (`timeoutSec`; 0 = the interval), or on
// a status that is not `expectStatus` (when set) or is ≥ 500 (when not).
import type { Runtime } from "../runtime/runtime.ts";
import type { CompiledConfig } from "../config/compile.ts";
import type { UpstreamTarget } from "./target.ts";
import type { UpstreamState } from "./registry.ts";
import { ProxyError } from "../errors.ts";
import { services } from "../runtime/start.ts";
import { hooks } from "../pipeline/hooks.ts";
import { log } from "../observability/log.ts";

export interface HealthSettings {
  intervalMs: number;
  timeoutMs: number;
  failThreshold: number;
  successReset: number;
  path: string;
  /** 0 = any status below 500 is healthy. */
  expectStatus: number;
}

/** Entries kept in `UpstreamState.history` (the status page shows the recent ones). */
const HISTORY_MAX = 50;
/** Bytes of a probe answer read to keep the connection reusable; the rest is cancelled. */
const DRAIN_MAX = 64 * 1024;

export function healthSettingsOf(c: CompiledConfig): HealthSettings | null {
  const h = c.config.proxy.health;
  if (!(h.intervalSec > 0)) return null;
  const intervalMs = Math.max(1, Math.round(h.intervalSec * 1000));
  return {
    intervalMs,
    timeoutMs: h.timeoutSec > 0 ? Math.max(1, Math.round(h.timeoutSec * 1000)) : intervalMs,
    failThreshold: h.failThreshold,
    successReset: h.successReset,
    path: h.path,
    expectStatus: h.expectStatus ?? 0,
  };
}

function sameSettings(a: HealthSettings, b: HealthSettings): boolean {
  return a.intervalMs === b.intervalMs && a.timeoutMs === b.timeoutMs && a.path === b.path && a.expectStatus === b.expectStatus;
}

/** Record a verdict; eject or restore when a threshold is reached. */
export function recordProbe(state: UpstreamState, s: HealthSettings, ok: boolean, reason: string, now = Date.now()): void {
  if (ok) {
    state.consecutiveProbeFailures = 0;
    if (state.healthy) return;
    if (++state.consecutiveProbeSuccesses >= s.successReset) setHealthy(state, true, reason, now);
  } else {
    state.consecutiveProbeSuccesses = 0;
    state.lastError = `health: ${reason}`;
    if (++state.consecutiveProbeFailures >= s.failThreshold && state.healthy) setHealthy(state, false, reason, now);
  }
}

function setHealthy(state: UpstreamState, healthy: boolean, reason: string, now: number): void {
  state.healthy = healthy;
  state.consecutiveProbeFailures = 0;
  state.consecutiveProbeSuccesses = 0;
  state.history.push([now, healthy ? "restored" : "ejected", reason]);
  if (state.history.length > HISTORY_MAX) state.history.splice(0, state.history.length - HISTORY_MAX);
  if (healthy) log("info", "upstream restored", { upstream: state.url, reason });
  else log("warn", "upstream ejected", { upstream: state.url, reason });
}

/** Probes one upstream URL in a loop until stopped. */
class Prober {
  target: UpstreamTarget;
  settings: HealthSettings;
  private readonly rt: Runtime;
  private stopped = false;
  private timer: Timer | undefined = undefined;
  private ctrl: AbortController | null = null;
  private running: Promise<void> | null = null;
  /** Bumped to discard the verdict of a probe whose settings were replaced. */
  private epoch = 0;

  constructor(rt: Runtime, target: UpstreamTarget, settings: HealthSettings) {
    this.rt = rt;
    this.target = target;
    this.settings = settings;
  }

  start(): void {
    this.run();
  }

  /** New target object (new generation) and maybe new settings. */
  update(target: UpstreamTarget, settings: HealthSettings): void {
    this.target = target;
    if (sameSettings(settings, this.settings)) {
      this.settings = settings;
      return;
    }
    this.settings = settings;
    this.epoch++;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.run();
    } else this.ctrl?.abort(new ProxyError("client_gone", "health check settings changed", { source: "internal" }));
    // a probe in flight re-runs as soon as it has settled (see `run`)
  }

  /** The probe in flight, if any (null when idle). */
  get inFlight(): Promise<void> | null {
    return this.running;
  }

  /** Stop probing; resolves once the probe in flight (if any) has settled. */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.ctrl?.abort(new ProxyError("client_gone", "health checks stopped", { source: "internal" }));
    return this.running ?? Promise.resolve();
  }

  private run(): void {
    if (this.stopped || this.running !== null) return;
    this.timer = undefined;
    const started = performance.now();
    const epoch = this.epoch;
    this.running = this.probe().then(([ok, reason]) => {
      this.running = null;
      if (this.stopped) return;
      if (epoch !== this.epoch) {
        this.run(); // settings changed while probing: discard and probe again now
        return;
      }
      recordProbe(this.target.state, this.settings, ok, reason);
      const wait = Math.max(0, this.settings.intervalMs - (performance.now() - started));
      this.timer = setTimeout(() => this.run(), wait);
    });
  }

  /** One probe → [healthy, reason]. Never rejects. */
  private async probe(): Promise<[boolean, string]> {
    const t = this.target;
    const s = this.settings;
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const timer = setTimeout(() => ctrl.abort(new ProxyError("timeout", "health check timed out", { source: "upstream" })), s.timeoutMs);
    try {
      const res = await this.rt.transportFor(t).send({
        method: "GET",
        target: t,
        path: t.basePath + s.path,
        host: authority(t),
        headers: ["user-agent", "hecate-health-check", "accept", "*/*"],
        body: null,
        signal: ctrl.signal,
        connectTimeoutMs: s.timeoutMs,
      });
      await drain(res.body);
      const ok = s.expectStatus !== 0 ? res.status === s.expectStatus : res.status < 500;
      return [ok, `HTTP ${res.status}`];
    } catch (e) {
      const reason = ctrl.signal.aborted && ctrl.signal.reason instanceof ProxyError ? ctrl.signal.reason.message : (e as Error).message;
      return [false, reason];
    } finally {
      clearTimeout(timer);
      this.ctrl = null;
    }
  }
}

/** Host header value of an upstream: host[:port] as in its URL. */
function authority(t: UpstreamTarget): string {
  const host = t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname;
  return (t.https && t.port === 443) || (!t.https && t.port === 80) ? host : `${host}:${t.port}`;
}

/** Read a small answer to its end (keeps the connection reusable); cancel a large one. */
async function drain(body: ReadableStream<Uint8Array> | null): Promise<void> {
  if (body === null) return;
  const reader = body.getReader();
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      n += value.byteLength;
      if (n > DRAIN_MAX) {
        await reader.cancel();
        return;
      }
    }
  } catch {
    // the status decided; a broken body does not matter here
  }
}

/** The health checker of one runtime. */
export class HealthChecker {
  private readonly rt: Runtime;
  private readonly probers = new Map<string, Prober>();
  private stopped = false;

  constructor(rt: Runtime) {
    this.rt = rt;
  }

  /** URLs being probed now (tests, admin). */
  get urls(): string[] {
    return [...this.probers.keys()];
  }

  /** Align the probers with the serving generation. Idempotent. */
  plan(): void {
    if (this.stopped) return;
    const c = this.rt.gen.compiled;
    const s = healthSettingsOf(c);
    const want = s === null ? new Map<string, { target: UpstreamTarget }>() : c.upstreamUrls;
    for (const [url, p] of this.probers) {
      if (want.has(url)) continue;
      this.probers.delete(url);
      void p.stop();
      // still configured but no longer checked: nothing would restore it, so restore now
      const state = c.upstreamUrls.get(url)?.target.state;
      if (state !== undefined && !state.healthy) setHealthy(state, true, "health checks disabled", Date.now());
    }
    if (s === null) return;
    for (const [url, { target }] of want) {
      const p = this.probers.get(url);
      if (p !== undefined) p.update(target, s);
      else {
        const np = new Prober(this.rt, target, s);
        this.probers.set(url, np);
        np.start();
      }
    }
  }

  /** Resolves once no probe is in flight (a probe re-run on settling counts as in flight); tests. */
  async settled(): Promise<void> {
    for (;;) {
      const busy = [...this.probers.values()].map((p) => p.inFlight).filter((r) => r !== null);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.probers.values()];
    this.probers.clear();
    await Promise.all(all.map((p) => p.stop()));
  }
}

const checkers = new Map<Runtime, HealthChecker>();

/** The health checker of a runtime (undefined before start or after stop). */
export function healthCheckerOf(rt: Runtime): HealthChecker | undefined {
  return checkers.get(rt);
}

services.push({
  // with several workers, the main thread probes for all of them (shared health state)
  mainThreadOnly: true,
  start(rt: Runtime) {
    if (checkers.has(rt)) return;
    const hc = new HealthChecker(rt);
    checkers.set(rt, hc);
    hc.plan();
  },
  async stop(rt: Runtime) {
    const hc = checkers.get(rt);
    if (hc === undefined) return;
    checkers.delete(rt);
    await hc.stop();
  },
});

const previousGeneration = hooks.generation;
hooks.generation = (rt: unknown) => {
  previousGeneration(rt);
  checkers.get(rt as Runtime)?.plan();
};
