// Header rules of SPEC §3.6: hop-by-hop removal both ways, X-Forwarded-*, Via, X-Request-Id.
import type { Exchange } from "./exchange.ts";
import type { CompiledRoute } from "../config/compile.ts";
import { lowerEq } from "../ascii.ts";

/** Request header names never forwarded as they are (hop-by-hop, or rebuilt by us). */
const DROP_REQUEST = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-request-id",
  "via",
  "x-hecate-retry-attempt",
]);

// Underscore spellings of the names above and of Content-Length are dropped too: CGI-style
// upstreams (WSGI, Rack, PHP-FPM) read `Transfer_Encoding` or `X_Forwarded_For` as the
// dashed field, so forwarding them would let a client smuggle framing or spoof a field that
// Hecate rewrites (nginx drops them likewise: `underscores_in_headers off`). Precomputed, so
// the per-header lookup below stays one Set.has.
for (const name of [...DROP_REQUEST, "content-length"]) {
  const parts = name.split("-");
  for (let mask = 1; mask < 1 << (parts.length - 1); mask++)
    DROP_REQUEST.add(parts.reduce((s, p, i) => (i === 0 ? p : s + ((mask >> (i - 1)) & 1 ? "_" : "-") + p), ""));
}

const HOP_RESPONSE = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

const REQUEST_ID_RE = /^[A-Za-z0-9._~:+/=-]{1,128}$/;
/** RFC 9110 §5.6.2 token, lower case (connectionTokens lower-cases). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/**
 * A request's fields as one object: lower-case names, repeated fields joined with ", " as
 * Headers#get joins them (only set-cookie stays a list). One native call (Headers#toJSON, in
 * Bun, not in its types) instead of a get() per field the path looks at (Host, X-Request-Id,
 * Upgrade, then every field for the upstream request).
 */
export type RequestFields = Record<string, string | string[]>;
export function requestFields(req: Request): RequestFields {
  return (req.headers as unknown as { toJSON(): RequestFields }).toJSON();
}

/** The client's X-Request-Id when well-formed, else a fresh UUIDv7. */
export function requestIdOf(fields: RequestFields): string {
  const id = fields["x-request-id"];
  return typeof id === "string" && REQUEST_ID_RE.test(id) ? id : Bun.randomUUIDv7();
}

/** Names listed in a Connection header value, lower case. */
function connectionTokens(value: string | null): string[] | null {
  if (value === null) return null;
  // the common values (every keep-alive upstream sends one) list nothing
  const l = value.length;
  if ((l === 10 && lowerEq(value, 0, "keep-alive")) || (l === 5 && lowerEq(value, 0, "close"))) return null;
  const out: string[] = [];
  for (const t of value.split(",")) {
    const n = t.trim().toLowerCase();
    if (n !== "" && n !== "close" && n !== "keep-alive") out.push(n);
  }
  return out.length > 0 ? out : null;
}

/**
 * The headers of the upstream request as a flat [name, value, …] list (without Host and
 * without X-Hecate-Retry-Attempt, which the attempt adds). Notes the request's
 * Content-Length, Transfer-Encoding and Idempotency-Key on `ex` on the way (one walk over the
 * fields instead of a look-up each).
 */
export function upstreamRequestHeaders(ex: Exchange, route: CompiledRoute, dropAuthorization: boolean): string[] {
  let out: string[] = [];
  let conn: string | null = null;
  let xff: string | null = null;
  let xfp: string | null = null;
  let xfh: string | null = null;
  let via: string | null = null;
  let te = false;
  // one native call for all fields, made once per request by the handler — ~40% cheaper than
  // iterating entries
  const all = ex.reqFields ?? (ex.reqFields = requestFields(ex.req));
  for (const name in all) {
    const raw = all[name]!;
    const value = typeof raw === "string" ? raw : raw.join(", ");
    if (DROP_REQUEST.has(name)) {
      switch (name) {
        case "connection":
          conn = value;
          break;
        case "transfer-encoding":
          ex.reqChunked = true;
          break;
        case "x-forwarded-for":
          xff = value;
          break;
        case "x-forwarded-proto":
          xfp = value;
          break;
        case "x-forwarded-host":
          xfh = value;
          break;
        case "via":
          via = value;
          break;
        case "te":
          te = /(^|,)\s*trailers\s*(;|,|$)/i.test(value);
          break;
      }
      continue;
    }
    if (name === "content-length") ex.reqContentLength = value;
    else if (name === "idempotency-key") ex.reqIdempotencyKey = true;
    else if (dropAuthorization && name === "authorization") continue;
    out.push(name, value);
  }
  // fields the Connection header lists are hop-by-hop too (rare: a second pass)
  const listed = connectionTokens(conn);
  if (listed !== null) {
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!listed.includes(out[i]!)) kept.push(out[i]!, out[i + 1]!);
    out = kept;
  }
  const trusted = ex.peerTrusted;
  out.push(
    "x-forwarded-for",
    trusted && xff !== null ? `${xff}, ${ex.peer}` : ex.peer,
    "x-forwarded-proto",
    trusted && xfp !== null ? xfp : ex.tls ? "https" : "http",
    "x-forwarded-host",
    trusted && xfh !== null ? xfh : ex.hostHeader,
    "x-request-id",
    ex.requestId,
    "via",
    via !== null ? `${via}, 1.1 hecate` : "1.1 hecate",
  );
  if (te) out.push("te", "trailers");
  if (route.reqRemove.length > 0 || route.reqSet.length > 0) return applyOps(out, route.reqRemove, route.reqSet);
  return out;
}

function applyOps(list: string[], remove: readonly string[], set: readonly (readonly [string, string])[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    const n = list[i]!;
    if (remove.includes(n) || set.some((s) => s[0] === n)) continue;
    out.push(n, list[i + 1]!);
  }
  for (const [n, v] of set) out.push(n, v);
  return out;
}

/** HOP_RESPONSE by name length: a name of any other length is not hop-by-hop. */
const HOP_BY_LENGTH: string[][] = [];
for (const n of HOP_RESPONSE) (HOP_BY_LENGTH[n.length] ??= []).push(n);

/** The hop-by-hop response field `name` is, in lower case, or null — without a lower-cased copy of every name. */
function hopResponseName(name: string): string | null {
  const same = HOP_BY_LENGTH[name.length];
  if (same !== undefined) for (let i = 0; i < same.length; i++) if (lowerEq(name, 0, same[i]!)) return same[i]!;
  return null;
}

/**
 * Headers from a flat [name, value, …] list of response fields (names: tokens, as the h1
 * parser checked them), without the hop-by-hop ones (what stripResponseHopHeaders would
 * leave, in one pass: no deletes). Names as received.
 */
export function endToEndHeaders(flat: readonly string[]): Headers {
  const h = new Headers();
  let listed: string[] | null = null;
  let undecorated = true;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    const l = name.length;
    if ((l === 3 && lowerEq(name, 0, "via")) || (l === 12 && lowerEq(name, 0, "x-request-id")) || (l === 15 && lowerEq(name, 0, "x-retry-attempt"))) undecorated = false;
    const hop = hopResponseName(name);
    if (hop !== null) {
      if (hop === "connection") {
        const t = connectionTokens(flat[i + 1]!);
        if (t !== null) (listed ??= []).push(...t);
      }
      continue;
    }
    h.append(name, flat[i + 1]!);
  }
  if (listed !== null) for (const n of listed) if (FIELD_NAME.test(n)) h.delete(n);
  endToEndScan.undecorated = undecorated;
  return h;
}

/** What the last endToEndHeaders call saw (read right after it): no field that decorateResponseHeaders sets. */
export const endToEndScan = { undecorated: false };

/** Remove hop-by-hop fields from an upstream response's headers, in place. */
export function stripResponseHopHeaders(h: Headers): void {
  const conn = h.get("connection");
  if (conn !== null) {
    const listed = connectionTokens(conn);
    // only field names: Headers.delete throws on anything else (an upstream's `Connection: a b`)
    if (listed) for (const n of listed) if (FIELD_NAME.test(n)) h.delete(n);
  }
  for (let i = 0; i < HOP_RESPONSE.length; i++) h.delete(HOP_RESPONSE[i]!);
}

/** "0" … "9": attempt numbers as header values without a string allocation per request. */
const ATTEMPT_TEXT: readonly string[] = Array.from({ length: 10 }, (_, i) => String(i));

/** An attempt number as a header value. */
export function attemptText(n: number): string {
  return n < ATTEMPT_TEXT.length ? ATTEMPT_TEXT[n]! : String(n);
}

/**
 * `h` (an upstream response's end-to-end fields, none of them one Hecate adds) made into a
 * template of the responses Hecate answers with that head: with Via, and X-Request-Id and
 * X-Retry-Attempt to be set per response (stampTemplate). Returns `h`.
 */
export function responseTemplate(h: Headers): Headers {
  h.append("via", "1.1 hecate");
  h.append("x-request-id", "-");
  h.append("x-retry-attempt", "0");
  return h;
}

/**
 * A template (responseTemplate) with this exchange's X-Request-Id and X-Retry-Attempt: what
 * decorateResponseHeaders makes of its head on a route without response ops. It stays the
 * template's until its next stamp, so it is passed to `new Response` (which copies it) at once.
 */
export function stampTemplate(tpl: Headers, ex: Exchange, attempt: number): Headers {
  tpl.set("x-request-id", ex.requestId);
  tpl.set("x-retry-attempt", attemptText(attempt));
  return tpl;
}

/** Headers Hecate adds to every proxied response, then the route's response ops. */
export function decorateResponseHeaders(h: Headers, ex: Exchange, route: CompiledRoute, attempt: number, undecorated = false): void {
  if (undecorated) {
    // none of them is there (the h1 transport saw every field): appends, no look-ups
    h.append("x-request-id", ex.requestId);
    h.append("x-retry-attempt", attemptText(attempt));
    h.append("via", "1.1 hecate");
  } else {
    h.set("x-request-id", ex.requestId);
    h.set("x-retry-attempt", attemptText(attempt));
    const via = h.get("via");
    h.set("via", via !== null ? `${via}, 1.1 hecate` : "1.1 hecate");
  }
  for (let i = 0; i < route.respRemove.length; i++) h.delete(route.respRemove[i]!);
  for (let i = 0; i < route.respSet.length; i++) h.set(route.respSet[i]![0], route.respSet[i]![1]);
}
