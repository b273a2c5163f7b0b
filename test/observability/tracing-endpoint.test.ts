// telemetry.otlpEndpoint → exporter URL and protocol (SPEC §2.6, §5).
import { test, expect } from "bun:test";
import { resolveExporterTarget } from "../../src/observability/tracing-target.ts";

const base = { protocol: undefined, insecure: false, headers: {} } as const;
const resolve = (otlpEndpoint: string, extra: Partial<{ protocol: "grpc" | "http/protobuf"; insecure: boolean; headers: Record<string, string> }> = {}) =>
  resolveExporterTarget({ ...base, otlpEndpoint, ...extra });

test("empty endpoint: no exporter", () => {
  expect(resolve("")).toBeNull();
  expect(resolve("   ")).toBeNull();
});

test("host:port: gRPC unless the port is 4318; http:// when insecure, https:// otherwise", () => {
  expect(resolve("collector:4317", { insecure: true })).toEqual({ protocol: "grpc", url: "http://collector:4317", insecure: true, headers: {} });
  expect(resolve("collector:4317")).toEqual({ protocol: "grpc", url: "https://collector:4317", insecure: false, headers: {} });
  expect(resolve("collector:4318", { insecure: true })).toEqual({ protocol: "http/protobuf", url: "http://collector:4318/v1/traces", insecure: true, headers: {} });
  expect(resolve("collector:4318")).toMatchObject({ protocol: "http/protobuf", url: "https://collector:4318/v1/traces" });
  expect(resolve("collector:9999", { protocol: "http/protobuf", insecure: true })).toMatchObject({ url: "http://collector:9999/v1/traces" });
  expect(resolve("collector:4318", { protocol: "grpc", insecure: true })).toMatchObject({ protocol: "grpc", url: "http://collector:4318" });
  expect(resolve("[::1]:4317", { insecure: true })).toMatchObject({ protocol: "grpc", url: "http://[::1]:4317" });
});

test("a URL with a path is used as it is (OTLP/HTTP); without one, /v1/traces is appended", () => {
  expect(resolve("https://otlp.example.com/custom/traces")).toEqual({ protocol: "http/protobuf", url: "https://otlp.example.com/custom/traces", insecure: false, headers: {} });
  expect(resolve("http://127.0.0.1:4318")).toEqual({ protocol: "http/protobuf", url: "http://127.0.0.1:4318/v1/traces", insecure: true, headers: {} });
  expect(resolve("http://127.0.0.1:4318/")).toMatchObject({ url: "http://127.0.0.1:4318/v1/traces" });
  expect(resolve("http://127.0.0.1:5555", { protocol: "http/protobuf" })).toMatchObject({ url: "http://127.0.0.1:5555/v1/traces" });
});

test("a URL without a path on another port is gRPC; its scheme decides TLS", () => {
  expect(resolve("http://collector:4317")).toEqual({ protocol: "grpc", url: "http://collector:4317", insecure: true, headers: {} });
  expect(resolve("https://collector:4317", { insecure: true })).toEqual({ protocol: "grpc", url: "https://collector:4317", insecure: false, headers: {} });
});

test("headers are passed on", () => {
  expect(resolve("c:4317", { headers: { authorization: "Bearer x" } })!.headers).toEqual({ authorization: "Bearer x" });
});
