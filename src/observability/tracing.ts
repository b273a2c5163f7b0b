// Traces (SPEC §5, §2.6): a SERVER span per public request (`{method} {route}`, or `{method}`
// when no route matched) and a CLIENT span per upstream attempt (`{method}`), exported over
// OTLP (gRPC or HTTP/protobuf) through a BatchSpanProcessor. The incoming W3C `traceparent`
// is continued; the outgoing one names the CLIENT span as parent. Parent-based ratio sampling.
//
// Cost: without `telemetry.otlpEndpoint` this module is not even loaded (tracing-service.ts); the pipeline hooks are
// only wrapped the first time a runtime starts with tracing on. With tracing on, the batch
// processor only queues finished spans (a full queue drops spans, it never blocks) and exports
// from a timer; export failures are logged at most once per FAILURE_LOG_INTERVAL_MS.
//
// State is per runtime (tests run several Hecates in one process): a runtime's generations
// map to its tracer, so a request is traced by the runtime that serves it, across reloads.
// `sampling` is re-read at each reload; the endpoint and protocol need a restart (reload.ts).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter, type TextMapSetter, type Attributes, type Link } from "@opentelemetry/api";
import { W3CTraceContextPropagator, ExportResultCode, type ExportResult } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  SamplingDecision,
  type ReadableSpan,
  type Sampler,
  type SamplingResult,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from "@opentelemetry/semantic-conventions";
import { createRequire } from "node:module";
import pkg from "../../package.json" with { type: "json" };
import type { Config } from "../config/schema.ts";
import type { Runtime } from "../runtime/runtime.ts";
import type { Generation } from "../runtime/generation.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { Outcome } from "../upstream/forward.ts";
import { upstreamPath } from "../upstream/forward.ts";
import { hooks } from "../pipeline/hooks.ts";
import type { ExporterTarget } from "./tracing-target.ts";
import { log } from "./log.ts";

type Telemetry = Config["telemetry"];

/** Export failures are logged at most this often (with a count of the ones in between). */
export const FAILURE_LOG_INTERVAL_MS = 30_000;
/** How long a shutdown waits for the last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 5_000;

export { resolveExporterTarget, type ExporterTarget } from "./tracing-target.ts";

async function createExporter(target: ExporterTarget): Promise<SpanExporter> {
  if (target.protocol === "http/protobuf") {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
    return new OTLPTraceExporter({ url: target.url, headers: target.headers, timeoutMillis: 10_000 }) as unknown as SpanExporter;
  }
  const [{ OTLPTraceExporter }, grpc] = await Promise.all([import("@opentelemetry/exporter-trace-otlp-grpc"), import("@grpc/grpc-js")]);
  exposeGrpcToRequire(grpc);
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(target.headers)) metadata.set(k.toLowerCase(), v);
  return new OTLPTraceExporter({
    url: target.url,
    metadata,
    credentials: target.insecure ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(),
    timeoutMillis: 10_000,
  }) as unknown as SpanExporter;
}

/**
 * otlp-grpc-exporter-base loads @grpc/grpc-js partly through `createRequire(import.meta.url)`,
 * which the bundler cannot follow: in the `bun build --compile` binary that require finds no
 * node_modules and every export fails with "Cannot find module '@grpc/grpc-js'". When that
 * require cannot resolve it, serve the bundled copy (the one imported above) as a virtual module.
 */
let grpcExposed = false;
function exposeGrpcToRequire(grpc: object): void {
  if (grpcExposed) return;
  grpcExposed = true;
  try {
    createRequire(import.meta.url).resolve("@grpc/grpc-js");
    return; // running from source: node_modules is there
  } catch {}
  Bun.plugin({
    name: "bundled @grpc/grpc-js",
    setup(build) {
      build.module("@grpc/grpc-js", () => ({ exports: grpc as Record<string, unknown>, loader: "object" }));
    },
  });
}

/** Passes spans on; reports failed exports to the log at most once per interval. */
class ReportingExporter implements SpanExporter {
  private failures = 0;
  private droppedSpans = 0;
  private lastLog = -Infinity;
  private lastError = "";
  constructor(
    private readonly inner: SpanExporter,
    private readonly target: ExporterTarget,
  ) {}

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.inner.export(spans, (r) => {
      if (r.code !== ExportResultCode.SUCCESS) this.failed(r.error, spans.length);
      done(r);
    });
  }

  private failed(error: Error | undefined, n: number): void {
    this.failures++;
    this.droppedSpans += n;
    this.lastError = error?.message ?? "export failed";
    const now = performance.now();
    if (now - this.lastLog < FAILURE_LOG_INTERVAL_MS) return;
    this.lastLog = now;
    log("warn", "trace export failed", {
      endpoint: this.target.url,
      protocol: this.target.protocol,
      error: this.lastError,
      failedExports: this.failures,
      droppedSpans: this.droppedSpans,
    });
    this.failures = 0;
    this.droppedSpans = 0;
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

/** Parent-based ratio sampling whose ratio a reload can change. */
const idBytes = new Uint8Array(24);
/** 48 hex digits: a 16-byte trace id then an 8-byte span id (never all zero in practice). */
function randomIds(): string {
  crypto.getRandomValues(idBytes);
  // toHex, not Buffer.from(idBytes.buffer, …): a new view per call adds one more incoming
  // reference to the buffer for every collection to filter (see piece() in h1/transport.ts)
  return (idBytes as Uint8Array & { toHex(): string }).toHex();
}

class RatioSampler implements Sampler {
  private inner: Sampler;
  ratio: number;
  constructor(ratio: number) {
    this.ratio = ratio;
    this.inner = new TraceIdRatioBasedSampler(ratio);
  }
  setRatio(ratio: number): void {
    if (ratio === this.ratio) return;
    this.ratio = ratio;
    this.inner = new TraceIdRatioBasedSampler(ratio);
  }
  /** Set by startServer around a startSpan for a root it has already decided to sample. */
  force = false;
  shouldSample(context: Context, traceId: string, name: string, kind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult {
    if (this.force) return { decision: SamplingDecision.RECORD_AND_SAMPLED };
    return this.inner.shouldSample(context, traceId, name, kind, attributes, links);
  }
  toString(): string {
    return `RatioSampler{${this.ratio}}`;
  }
}

// --- per-runtime tracing ----------------------------------------------------------------------

const propagator = new W3CTraceContextPropagator();

const headersGetter: TextMapGetter<Headers> = {
  get: (h, key) => h.get(key) ?? undefined,
  keys: (h) => [...h.keys()],
};

/** Sets a field of the flat [name, value, …] upstream header list, replacing any copy. */
const flatSetter: TextMapSetter<string[]> = {
  set(list, key, value) {
    setFlat(list, key, value);
  },
};

function setFlat(list: string[], name: string, value: string | null): void {
  let set = value === null;
  for (let i = 0; i < list.length; ) {
    if (list[i] === name) {
      if (!set) {
        list[i + 1] = value!;
        set = true;
      } else {
        list.splice(i, 2);
        continue;
      }
    }
    i += 2;
  }
  if (!set) list.push(name, value!);
}

class Tracing {
  readonly provider: TracerProvider;
  readonly tracer: ReturnType<TracerProvider["getTracer"]>;
  readonly sampler: RatioSampler;
  closed = false;
  constructor(
    readonly target: ExporterTarget,
    exporter: SpanExporter,
    telemetry: Telemetry,
  ) {
    this.sampler = new RatioSampler(telemetry.sampling);
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: telemetry.serviceName, [ATTR_SERVICE_VERSION]: pkg.version }),
      sampler: new ParentBasedSampler({ root: this.sampler }),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: new ReportingExporter(exporter, target),
          maxQueueSize: 4096,
          maxExportBatchSize: 512,
          scheduledDelayMillis: 1000,
          exportTimeoutMillis: 15_000,
        }),
      ],
    });
    this.tracer = this.provider.getTracer("hecate", pkg.version);
  }

  startServer(ex: Exchange): void {
    const h = ex.req.headers;
    let parent = ROOT_CONTEXT;
    let remote = false;
    if (h.has("traceparent")) {
      parent = propagator.extract(ROOT_CONTEXT, h, headersGetter);
      remote = parent !== ROOT_CONTEXT;
    }
    let span: Span;
    if (!remote) {
      // A root: decide first. Most requests at low ratios are not sampled, and for those a
      // non-recording span over fresh random ids is all that is needed (propagation only) —
      // far cheaper than the SDK's span creation.
      if (Math.random() >= this.sampler.ratio) {
        const ids = randomIds();
        ex.span = trace.wrapSpanContext({ traceId: ids.slice(0, 32), spanId: ids.slice(32), traceFlags: 0 });
        return;
      }
      this.sampler.force = true;
      try {
        span = this.tracer.startSpan(ex.method, { kind: SpanKind.SERVER }, parent);
      } finally {
        this.sampler.force = false;
      }
    } else span = this.tracer.startSpan(ex.method, { kind: SpanKind.SERVER }, parent);
    ex.span = span;
    if (span.isRecording()) {
      ex.traceId = span.spanContext().traceId;
      span.setAttribute(ATTR_HTTP_REQUEST_METHOD, ex.method);
      span.setAttribute(ATTR_URL_SCHEME, ex.tls ? "https" : "http");
      if (ex.peer !== "") span.setAttribute(ATTR_NETWORK_PEER_ADDRESS, ex.peer);
      const ua = h.get("user-agent");
      if (ua !== null) span.setAttribute(ATTR_USER_AGENT_ORIGINAL, ua);
    } else if (remote) {
      // not exported, but the caller's trace id still correlates the access log
      ex.traceId = span.spanContext().traceId;
    }
  }

  startClient(ex: Exchange, server: Span, t: UpstreamTarget, attempt: number, headers: string[]): Span {
    const span = this.tracer.startSpan(ex.method, { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, server));
    if (span.isRecording()) {
      span.setAttribute(ATTR_HTTP_REQUEST_METHOD, ex.method);
      span.setAttribute(ATTR_SERVER_ADDRESS, t.hostname);
      span.setAttribute(ATTR_SERVER_PORT, t.port);
      span.setAttribute(ATTR_URL_FULL, ex.route !== null ? t.origin + upstreamPath(ex, ex.route, t) : t.origin);
      if (attempt > 0) span.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, attempt);
    }
    // tracestate only travels with the traceparent that it belongs to
    setFlat(headers, "tracestate", null);
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, flatSetter);
    return span;
  }

  endClient(span: Span, outcome: Outcome, status: number): void {
    if (span.isRecording()) {
      if (status > 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      if (outcome !== "ok" || status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, status >= 500 ? String(status) : outcome);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
  }

  endServer(ex: Exchange, span: Span): void {
    if (span.isRecording()) {
      const route = ex.route;
      if (route !== null) {
        span.updateName(`${ex.method} ${route.name}`);
        span.setAttribute(ATTR_HTTP_ROUTE, route.name);
      }
      span.setAttribute(ATTR_URL_PATH, ex.path);
      if (ex.host !== "") span.setAttribute(ATTR_SERVER_ADDRESS, ex.host);
      if (ex.clientIp !== "") span.setAttribute(ATTR_CLIENT_ADDRESS, ex.clientIp);
      if (ex.proto.startsWith("HTTP/")) span.setAttribute(ATTR_NETWORK_PROTOCOL_VERSION, ex.proto.slice(5));
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, ex.status);
      span.setAttribute("hecate.request_id", ex.requestId);
      if (ex.upstream !== null) span.setAttribute("hecate.upstream", ex.upstream.origin);
      span.setAttribute("hecate.attempts", ex.attempts);
      if (ex.status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, String(ex.status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    let timer: Timer | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), SHUTDOWN_FLUSH_MS)));
    const done = await Promise.race([this.provider.shutdown().then(() => "ok" as const, (e: Error) => e), timeout]);
    clearTimeout(timer);
    if (done === "timeout") log("warn", "tracing: spans not exported before shutdown", { endpoint: this.target.url });
    else if (done instanceof Error) log("warn", "tracing: shutdown export failed", { endpoint: this.target.url, error: done.message });
  }
}

const byRuntime = new WeakMap<Runtime, Tracing>();
const byGeneration = new WeakMap<Generation, Tracing>();

function tracingOf(ex: Exchange): Tracing | undefined {
  const t = byGeneration.get(ex.gen);
  return t === undefined || t.closed ? undefined : t;
}

/** The opaque attemptStart token: ours plus the one of the hook we wrapped. */
class AttemptToken {
  constructor(
    readonly prev: unknown,
    readonly span: Span,
  ) {}
}

let hooksInstalled = false;

/** Wrap the pipeline hooks (once, and only when some runtime traces). */
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;

  const prevStart = hooks.start;
  hooks.start = function tracingStart(ex) {
    prevStart(ex);
    tracingOf(ex)?.startServer(ex);
  };

  const prevAttemptStart = hooks.attemptStart;
  hooks.attemptStart = function tracingAttemptStart(ex, t, attempt, headers) {
    const prev = prevAttemptStart(ex, t, attempt, headers);
    const server = ex.span as Span | null;
    if (server === null) return prev;
    if (!server.isRecording()) {
      // Not sampled: no CLIENT span (it would not be exported either); propagate the trace
      // context straight from the SERVER span — the cheap path for most requests at low ratios.
      const sc = server.spanContext();
      setFlat(headers, "traceparent", `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`);
      return prev;
    }
    const tr = tracingOf(ex);
    if (tr === undefined) return prev;
    return new AttemptToken(prev, tr.startClient(ex, server, t, attempt, headers));
  };

  const prevAttempt = hooks.upstreamAttempt;
  hooks.upstreamAttempt = function tracingAttempt(ex, t, outcome, ms, status, token) {
    if (token instanceof AttemptToken) {
      prevAttempt(ex, t, outcome, ms, status, token.prev);
      byGeneration.get(ex.gen)?.endClient(token.span, outcome, status);
    } else prevAttempt(ex, t, outcome, ms, status, token);
  };

  const prevFinish = hooks.finish;
  hooks.finish = function tracingFinish(ex, durMs) {
    prevFinish(ex, durMs);
    const span = ex.span as Span | null;
    if (span === null) return;
    byGeneration.get(ex.gen)?.endServer(ex, span);
  };

  const prevGeneration = hooks.generation;
  hooks.generation = function tracingGeneration(rt) {
    prevGeneration(rt);
    const r = rt as Runtime;
    const t = byRuntime.get(r);
    if (t === undefined) return;
    byGeneration.set(r.gen, t);
    t.sampler.setRatio(r.gen.compiled.config.telemetry.sampling);
  };
}

/** Tracing on for `rt` (tracing-service.ts calls this when `otlpEndpoint` is set). */
export async function startTracing(rt: Runtime, target: ExporterTarget): Promise<void> {
  const telemetry = rt.gen.compiled.config.telemetry;
  const t = new Tracing(target, await createExporter(target), telemetry);
  byRuntime.set(rt, t);
  byGeneration.set(rt.gen, t);
  installHooks();
  log("info", "tracing on", { endpoint: target.url, protocol: target.protocol, sampling: telemetry.sampling, serviceName: telemetry.serviceName });
}

export async function stopTracing(rt: Runtime): Promise<void> {
  const t = byRuntime.get(rt);
  if (t === undefined) return;
  byRuntime.delete(rt);
  await t.shutdown();
}
