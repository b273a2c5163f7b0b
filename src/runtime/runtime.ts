// Process-wide state: the current generation, upstream registry, transports, drain flag and
// counters. One instance per process (per worker thread once workers exist).
import type { Generation } from "./generation.ts";
import { UpstreamRegistry } from "../upstream/registry.ts";
import type { UpstreamTransport } from "../upstream/transport.ts";
import { FetchTransport } from "../upstream/fetch-transport.ts";
import { H2cTransport } from "../upstream/h2c-transport.ts";
import { H1Transport } from "../upstream/h1/transport.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import { hooks } from "../pipeline/hooks.ts";
import { accessLog } from "../observability/access-log.ts";

export class Runtime {
  gen: Generation;
  readonly registry: UpstreamRegistry;
  draining = false;
  /** Listeners bound and background services started (GET /readyz says `starting` until then). */
  ready = false;
  /** Public requests currently being handled (admin requests are not counted). */
  inflight = 0;
  /** Public requests handled since start. */
  requests = 0;
  readonly startedAt = Date.now();
  configPath: string | null;
  /** Transport for http:// upstreams and for https:// ones. */
  httpTransport: UpstreamTransport;
  httpsTransport: UpstreamTransport;
  /** Cleartext HTTP/2 for http:// upstreams when proxy.enableUpstreamH2C (made on first use). */
  h2cTransport: UpstreamTransport | null = null;
  /** proxy.enableUpstreamH2C of the serving generation. */
  private upstreamH2C: boolean;
  lastReload: { at: number; ok: boolean; errors: number } | null = null;

  constructor(gen: Generation, registry: UpstreamRegistry, configPath: string | null) {
    this.gen = gen;
    this.registry = registry;
    this.configPath = configPath;
    this.upstreamH2C = gen.compiled.config.proxy.enableUpstreamH2C;
    this.httpTransport = new H1Transport();
    this.httpsTransport = new FetchTransport({ insecureTls: process.env.HECATE_UPSTREAM_INSECURE_TLS === "1" });
  }

  /** Make `compiled` the serving generation; the old one is disposed. */
  swap(compiled: import("../config/compile.ts").CompiledConfig): void {
    const old = this.gen;
    this.gen = { id: old.id + 1, compiled, loadedAt: Date.now() };
    this.upstreamH2C = compiled.config.proxy.enableUpstreamH2C;
    this.registry.retain(new Set(compiled.upstreamUrls.keys()));
    hooks.generation(this);
    old.compiled.dispose();
  }

  /** End of an exchange: exactly once per public request (access log, metrics, counters). */
  finish(ex: Exchange, res: Response | null): void {
    if (ex.finished) return;
    ex.finished = true;
    if (res !== null && ex.bytes === 0) {
      const cl = res.headers.get("content-length");
      if (cl !== null) ex.bytes = Number(cl);
    }
    this.inflight--;
    const dur = performance.now() - ex.start;
    hooks.finish(ex, dur);
    if (ex.gen.compiled.config.telemetry.accessLog) accessLog(ex, dur);
  }

  transportFor(t: UpstreamTarget): UpstreamTransport {
    if (t.https) return this.httpsTransport;
    return this.upstreamH2C ? (this.h2cTransport ??= new H2cTransport()) : this.httpTransport;
  }
}
