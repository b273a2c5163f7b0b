// One JSON line per request (SPEC §5), built by hand in a fixed field order.
import type { Exchange } from "../pipeline/exchange.ts";
import { writeLine } from "./log.ts";

const q = JSON.stringify;

export function accessLog(ex: Exchange, durMs: number): void {
  const url = ex.req.headers;
  writeLine(
    `{"time":${q(new Date().toISOString())},"level":"info","msg":"http","method":${q(ex.method)},"host":${q(ex.hostHeader)},"path":${q(ex.path)},` +
      `${ex.proto !== "" ? `"proto":${q(ex.proto)},` : ""}"status":${ex.status},"bytes":${ex.bytes},"dur_ms":${Math.round(durMs * 1000) / 1000},` +
      `"route":${q(ex.route?.name ?? "")},"upstream":${q(ex.upstream?.origin ?? "")},"attempts":${ex.attempts},"request_id":${q(ex.requestId)},` +
      `"trace_id":${q(ex.traceId)},"remote":${q(ex.clientIp)},"ua":${q(url.get("user-agent") ?? "")}}`,
  );
}
