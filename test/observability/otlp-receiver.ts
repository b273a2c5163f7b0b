// A real OTLP trace receiver for the tests: HTTP/protobuf (POST /v1/traces on Bun.serve) and
// gRPC (@grpc/grpc-js, TraceService/Export). Requests are decoded with protobufjs from the
// OTLP .proto definitions below.
//
// The OpenTelemetry JS packages used here (otlp-transformer 0.301) no longer ship generated
// protobuf code or .proto files (their serializer is a hand-written writer), so the subset of
// opentelemetry-proto that an ExportTraceServiceRequest uses is transcribed here, with the field
// numbers of opentelemetry/proto/{collector/trace,trace,common,resource}/v1 (they match the
// field maps documented in otlp-transformer's trace-serializer). Decoding with an independent
// library keeps the test from agreeing with a bug in the encoder.
import protobuf from "protobufjs";
import * as grpc from "@grpc/grpc-js";

const OTLP_PROTO = `
syntax = "proto3";
package otlp;

message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }

message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  enum SpanKind {
    SPAN_KIND_UNSPECIFIED = 0;
    SPAN_KIND_INTERNAL = 1;
    SPAN_KIND_SERVER = 2;
    SPAN_KIND_CLIENT = 3;
    SPAN_KIND_PRODUCER = 4;
    SPAN_KIND_CONSUMER = 5;
  }
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
}
message Status {
  reserved 1;
  string message = 2;
  enum StatusCode { STATUS_CODE_UNSET = 0; STATUS_CODE_OK = 1; STATUS_CODE_ERROR = 2; }
  StatusCode code = 3;
}
`;

const root = protobuf.parse(OTLP_PROTO, { keepCase: true }).root;
const RequestType = root.lookupType("otlp.ExportTraceServiceRequest");
const ResponseType = root.lookupType("otlp.ExportTraceServiceResponse");

export type AttrValue = string | number | boolean | null;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER" | "UNSPECIFIED";
  attributes: Record<string, AttrValue>;
  status: { code: "UNSET" | "OK" | "ERROR"; message: string };
  resource: Record<string, AttrValue>;
  scope: string;
}

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("hex") : "");

function anyValue(v: any): AttrValue {
  if (v == null) return null;
  if (v.string_value !== undefined) return v.string_value;
  if (v.bool_value !== undefined) return v.bool_value;
  if (v.int_value !== undefined) return Number(v.int_value);
  if (v.double_value !== undefined) return v.double_value;
  return JSON.stringify(v);
}

function attrs(list: any[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of list ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

/** Decode one ExportTraceServiceRequest into flat spans. */
export function decodeExportRequest(body: Uint8Array): ReceivedSpan[] {
  const msg = RequestType.toObject(RequestType.decode(body), { longs: String, enums: String, bytes: Array as never, defaults: false, oneofs: false }) as any;
  const out: ReceivedSpan[] = [];
  for (const rs of msg.resource_spans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scope_spans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.trace_id && Uint8Array.from(s.trace_id)),
          spanId: hex(s.span_id && Uint8Array.from(s.span_id)),
          parentSpanId: hex(s.parent_span_id && Uint8Array.from(s.parent_span_id)),
          traceState: s.trace_state ?? "",
          name: s.name,
          kind: String(s.kind ?? "SPAN_KIND_UNSPECIFIED").replace("SPAN_KIND_", "") as ReceivedSpan["kind"],
          attributes: attrs(s.attributes),
          status: { code: String(s.status?.code ?? "STATUS_CODE_UNSET").replace("STATUS_CODE_", "") as ReceivedSpan["status"]["code"], message: s.status?.message ?? "" },
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return out;
}

export interface Receiver {
  /** `host:port` */
  address: string;
  port: number;
  spans: ReceivedSpan[];
  /** Export requests received (including ones that held no span). */
  exports: number;
  /** Request headers (HTTP) or metadata (gRPC) of the last export. */
  lastHeaders: Record<string, string>;
  /** Resolves when `pred` holds over the received spans; rejects after `ms`. */
  waitFor(pred: (spans: ReceivedSpan[]) => boolean, ms?: number): Promise<ReceivedSpan[]>;
  stop(): Promise<void>;
}

function receiver(): Omit<Receiver, "address" | "port" | "stop"> {
  const r = {
    spans: [] as ReceivedSpan[],
    exports: 0,
    lastHeaders: {} as Record<string, string>,
    async waitFor(pred: (spans: ReceivedSpan[]) => boolean, ms = 10_000) {
      const deadline = performance.now() + ms;
      while (!pred(r.spans)) {
        if (performance.now() > deadline) throw new Error(`OTLP receiver: condition not met after ${ms} ms; got ${r.spans.length} spans: ${JSON.stringify(r.spans.map((s) => [s.kind, s.name, s.traceId]))}`);
        await Bun.sleep(20);
      }
      return r.spans;
    },
  };
  return r;
}

/** OTLP/HTTP protobuf receiver on 127.0.0.1:0 (POST /v1/traces, or any path given). */
export function startHttpReceiver(path = "/v1/traces"): Receiver {
  const r = receiver();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (req.method !== "POST" || url.pathname !== path) return new Response("not found", { status: 404 });
      const body = new Uint8Array(await req.arrayBuffer());
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      r.lastHeaders = headers;
      r.exports++;
      r.spans.push(...decodeExportRequest(body));
      return new Response(ResponseType.encode(ResponseType.create({})).finish(), { headers: { "content-type": "application/x-protobuf" } });
    },
  });
  return Object.assign(r, {
    address: `127.0.0.1:${server.port}`,
    port: server.port!,
    async stop() {
      server.stop(true);
    },
  });
}

/** OTLP/gRPC receiver on 127.0.0.1:0 (plain text). */
export async function startGrpcReceiver(): Promise<Receiver> {
  const r = receiver();
  const server = new grpc.Server();
  const service: grpc.ServiceDefinition = {
    Export: {
      path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Uint8Array) => Buffer.from(b),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(service, {
    Export(call: grpc.ServerUnaryCall<Buffer, Uint8Array>, cb: grpc.sendUnaryData<Uint8Array>) {
      try {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(call.metadata.getMap())) headers[k] = String(v);
        r.lastHeaders = headers;
        r.exports++;
        r.spans.push(...decodeExportRequest(call.request));
        cb(null, ResponseType.encode(ResponseType.create({})).finish());
      } catch (e) {
        cb({ code: grpc.status.INVALID_ARGUMENT, details: (e as Error).message });
      }
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return Object.assign(r, {
    address: `127.0.0.1:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      }),
  });
}
