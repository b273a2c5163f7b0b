// The one place where a policy stage records a denial: `ex.denied` for the access log and the
// `denied` hook for `hecate_policy_denied_total{route,policy}` (SPEC §5).
import type { Exchange } from "../pipeline/exchange.ts";
import { hooks } from "../pipeline/hooks.ts";
import { textResponse } from "../errors.ts";

export type DeniedPolicy = "limits" | "ip_acl" | "geoip" | "asn" | "rate_limit" | "auth";

export function deny(ex: Exchange, policy: DeniedPolicy): void {
  ex.denied = policy;
  hooks.denied(ex, policy);
}

/** 403 of the ACL, GeoIP and ASN stages. */
export function forbidden(ex: Exchange, policy: "ip_acl" | "geoip" | "asn"): Response {
  deny(ex, policy);
  return textResponse(403, "forbidden", ex.requestId);
}
