// Property-based fuzzing of the W3C Trace Context parser Hecate uses (tracing.ts extracts the
// client's `traceparent`/`tracestate` with @opentelemetry/core's W3CTraceContextPropagator,
// through a Headers getter like the one below): whatever a client sends, extraction never
// throws, never yields an invalid or all-zero id, accepts what W3C Trace Context Level 1 §3.2
// calls valid, and what goes upstream — tracing.ts injects its own CLIENT span, child of the
// SERVER span, child of the client's context — is a valid version-00 traceparent of the same
// trace.
//
// Found on the way (not reachable through Hecate, noted for whoever injects an extracted
// context directly): W3CTraceContextPropagator.inject writes the flags as "0" + hex, so a
// remote context with flags above 0x0f (legal in a later version, e.g. "01-…-e0") is written
// back as "00-…-0e0", an invalid traceparent. Hecate's spans carry only the sampled bit.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { ROOT_CONTEXT, SpanKind, trace, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from "@opentelemetry/sdk-trace";

const RUNS = 20_000;
const propagator = new W3CTraceContextPropagator();
/** As tracing.ts builds it (no exporter: spans go nowhere). */
const tracer = new TracerProvider({ sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.5) }) }).getTracer("fuzz");
/** As in src/observability/tracing.ts. */
const headersGetter: TextMapGetter<Headers> = {
  get: (h, key) => h.get(key) ?? undefined,
  keys: (h) => [...h.keys()],
};
const flatSetter: TextMapSetter<string[]> = {
  set(list, key, value) {
    list.push(key, value);
  },
};

/**
 * W3C Trace Context §3.2.2: version-traceid-parentid-flags, lower-case hex, version ff invalid,
 * all-zero ids invalid; version 00 has exactly these four fields; a later version may append
 * "-" and more (§4.3), which a version-00 parser ignores.
 */
function refValid(v: string): boolean {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(v);
  if (!m) return false;
  if (m[1] === "ff") return false;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return false;
  if (m[1] === "00" && m[5] !== undefined) return false;
  return true;
}

const hex = (n: number) => fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: n, maxLength: n });
const messyHex = (n: number) =>
  fc.oneof(
    { weight: 6, arbitrary: hex(n) },
    { weight: 1, arbitrary: fc.constant("0".repeat(n)) },
    { weight: 1, arbitrary: hex(n).map((s) => s.toUpperCase()) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(..."0123456789abcdefgxX- "), minLength: n - 1, maxLength: n + 1 }) },
  );
const traceparent = fc.oneof(
  fc
    .tuple(fc.oneof(fc.constant("00"), fc.constant("01"), fc.constant("ff"), messyHex(2)), messyHex(32), messyHex(16), messyHex(2), fc.option(fc.string({ maxLength: 10 }), { nil: undefined }))
    .map(([v, t, p, f, rest]) => `${v}-${t}-${p}-${f}${rest === undefined ? "" : "-" + rest}`),
  fc.string({ maxLength: 70 }),
);
const tracestate = fc.oneof(
  fc.array(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_*/-]{0,8}(@[a-z][a-z0-9_*/-]{0,5})?$/), fc.string({ maxLength: 10 })).map(([k, v]) => `${k}=${v}`), { maxLength: 40 }).map((a) => a.join(",")),
  fc.string({ maxLength: 200 }),
);

test(`extract never throws and never yields an invalid context (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(traceparent, fc.option(tracestate, { nil: undefined }), (tp, ts) => {
      const h = new Headers();
      try {
        h.set("traceparent", tp);
        if (ts !== undefined) h.set("tracestate", ts);
      } catch {
        return; // not a header value a client could send (CR, LF, NUL…): Bun's parser refuses it
      }
      const ctx = propagator.extract(ROOT_CONTEXT, h, headersGetter);
      const sc = trace.getSpanContext(ctx);
      const sent = h.get("traceparent")!;
      if (sc === undefined) {
        expect(refValid(sent.trim())).toBe(false);
        return;
      }
      expect(refValid(sent.trim())).toBe(true);
      expect(sc.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(sc.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(sc.traceId).not.toBe("0".repeat(32));
      expect(sc.spanId).not.toBe("0".repeat(16));
      expect(sc.isRemote).toBe(true);
      expect(sc.traceId).toBe(sent.trim().slice(3, 35));
      expect(sc.spanId).toBe(sent.trim().slice(36, 52));
      // what goes upstream (tracing.ts: SERVER span under the client's context, CLIENT span under
      // it, injected) carries the same trace id in a valid version-00 traceparent, and a
      // tracestate of at most 32 well-formed members
      const server = tracer.startSpan("GET", { kind: SpanKind.SERVER }, ctx);
      const client = tracer.startSpan("GET", { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, server));
      const out: string[] = [];
      propagator.inject(trace.setSpan(ROOT_CONTEXT, client), out, flatSetter);
      client.end();
      server.end();
      const tpOut = out[out.indexOf("traceparent") + 1]!;
      expect(tpOut).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
      expect(tpOut.slice(3, 35)).toBe(sc.traceId);
      const i = out.indexOf("tracestate");
      if (i >= 0) {
        // an unparsable tracestate serialises to "" (sent as an empty field: harmless, and valid)
        const members = out[i + 1]!.split(",").filter((m) => m !== "");
        expect(members.length).toBeLessThanOrEqual(32);
        for (const m of members) expect(m).toMatch(/^[^=,\s]+=[^,]*$/);
      }
    }),
    { numRuns: RUNS },
  );
});

test(`every valid version-00 traceparent is accepted (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(hex(32), hex(16), hex(2), (t, p, f) => {
      fc.pre(!/^0+$/.test(t) && !/^0+$/.test(p));
      const h = new Headers({ traceparent: `00-${t}-${p}-${f}` });
      const sc = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, h, headersGetter));
      expect(sc?.traceId).toBe(t);
      expect(sc?.spanId).toBe(p);
      expect(sc?.traceFlags).toBe(parseInt(f, 16));
    }),
    { numRuns: RUNS },
  );
});
