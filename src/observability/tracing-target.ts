// Where traces go: `telemetry.otlpEndpoint` resolved (SPEC §2.6, §5). Apart from tracing.ts so
// that deciding whether to trace at all loads none of OpenTelemetry (tracing-service.ts).
import type { Config } from "../config/schema.ts";

type Telemetry = Config["telemetry"];

export interface ExporterTarget {
  protocol: "grpc" | "http/protobuf";
  /** For http/protobuf the full URL POSTed to; for gRPC `http(s)://host:port`. */
  url: string;
  /** Plain-text connection (no TLS). */
  insecure: boolean;
  headers: Record<string, string>;
}

const SCHEME_RE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Resolve `telemetry.otlpEndpoint` (SPEC §2.6, §5). `host:port` becomes `http://host:port` when
 * `insecure`, else `https://host:port`; for HTTP `/v1/traces` is appended. A URL is used as it
 * is when it has a path (HTTP), or gets `/v1/traces` when it has none; its scheme decides TLS
 * (`insecure` only applies to the `host:port` form). Protocol default: `http/protobuf` for port
 * 4318 or a URL with a path, else `grpc`. Returns null when empty.
 */
export function resolveExporterTarget(t: Pick<Telemetry, "otlpEndpoint" | "protocol" | "insecure" | "headers">): ExporterTarget | null {
  const ep = t.otlpEndpoint.trim();
  if (ep === "") return null;
  if (SCHEME_RE.test(ep)) {
    const u = new URL(ep);
    const https = u.protocol === "https:";
    const port = u.port !== "" ? Number(u.port) : https ? 443 : 80;
    const hasPath = u.pathname !== "" && u.pathname !== "/";
    // gRPC has no use for a path: a URL with one means OTLP/HTTP
    const protocol = t.protocol ?? (port === 4318 || hasPath ? "http/protobuf" : "grpc");
    const base = `${u.protocol}//${u.host}`;
    const url = protocol === "grpc" ? base : hasPath ? ep : `${base}/v1/traces`;
    return { protocol, url, insecure: !https, headers: { ...t.headers } };
  }
  const colon = ep.lastIndexOf(":");
  const port = colon > 0 && !ep.endsWith("]") ? Number(ep.slice(colon + 1)) : NaN;
  const protocol = t.protocol ?? (port === 4318 ? "http/protobuf" : "grpc");
  const scheme = t.insecure ? "http" : "https";
  const url = `${scheme}://${ep}${protocol === "http/protobuf" ? "/v1/traces" : ""}`;
  return { protocol, url, insecure: t.insecure, headers: { ...t.headers } };
}
