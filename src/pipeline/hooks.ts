// Observation points on the request path. Observability modules replace these no-ops at
// start-up; the pipeline calls them without knowing who listens. Kept as plain functions on
// one object so an unused hook costs one call of an empty function.
import type { Exchange } from "./exchange.ts";
import type { CompiledRoute } from "../config/compile.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { Outcome } from "../upstream/forward.ts";

export const hooks = {
  /** An exchange has been accepted (a SERVER span starts here). */
  start(_ex: Exchange): void {},
  /**
   * An upstream attempt is about to be sent; `headers` is the flat list that will be sent and
   * may be appended to (traceparent). Returns an opaque token given back to upstreamAttempt.
   */
  attemptStart(_ex: Exchange, _t: UpstreamTarget, _attempt: number, _headers: string[]): unknown {
    return undefined;
  },
  /** One upstream attempt ended (headers received, or failed). */
  upstreamAttempt(_ex: Exchange, _t: UpstreamTarget, _outcome: Outcome, _ms: number, _status: number, _token: unknown): void {},
  /** A retry is about to happen. */
  retry(_ex: Exchange, _route: CompiledRoute, _reason: "connect_error" | "status_5xx" | "timeout"): void {},
  /** The exchange is complete (response sent or failed): metrics, span end. Runs once. */
  finish(_ex: Exchange, _durMs: number): void {},
  /** A reload finished (ok or not); generation is the one now serving. */
  reload(_ok: boolean, _generation: number): void {},
  /** A new generation is live (health checkers, metrics children rebuild here). */
  generation(_rt: unknown): void {},
  /** A policy stage denied the request; `policy` ∈ limits, ip_acl, geoip, asn, rate_limit, auth. */
  denied(_ex: Exchange, _policy: string): void {},
  /** A proxied WebSocket tunnel opened, or ended (both sides closed; `finish` follows). */
  websocket(_ex: Exchange, _event: "open" | "close"): void {},
  /** A shared rate-limit store (Redis) could not decide; `failOpen` answered (admit or 429). */
  rateLimitStoreError(_result: "fail_open" | "fail_closed"): void {},
};
