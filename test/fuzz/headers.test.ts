// Property-based fuzzing of Hecate's header handling (SPEC §3.6): for any set of request
// fields — hop-by-hop ones, Connection lists naming anything, underscore aliases, framing
// fields, random tokens — the upstream field list keeps exactly the end-to-end fields, drops
// every hop-by-hop one and every field Connection names, never forwards an alias of a framing
// or proxy-set field, and carries exactly one of each field Hecate sets. The same for responses,
// and for X-Request-Id.
import { test, expect } from "bun:test";
import fc from "fast-check";
import { upstreamRequestHeaders, stripResponseHopHeaders, requestIdOf, requestFields, endToEndHeaders, endToEndScan, decorateResponseHeaders } from "../../src/pipeline/headers.ts";
import type { Exchange } from "../../src/pipeline/exchange.ts";
import type { CompiledRoute } from "../../src/config/compile.ts";

const RUNS = 20_000;
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const HOP = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];
const SET_BY_HECATE = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "via"];
/** Also never forwarded as sent: Host (sent apart), X-Hecate-Retry-Attempt (added per attempt). */
const OTHER_DROPPED = ["host", "x-hecate-retry-attempt"];
const underscore = (n: string) => n.replace(/-/g, "_");

const nameArb = fc.oneof(
  fc.constantFrom(...HOP, ...SET_BY_HECATE, ...OTHER_DROPPED, "content-length", "content-type", "authorization", "cookie", "x-a", "x-b", "accept"),
  fc.constantFrom(...[...HOP, ...SET_BY_HECATE, ...OTHER_DROPPED, "content-length"].map(underscore), "x_forwarded-for", "x-forwarded_for", "X_Forwarded_For"),
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,10}$/),
);
const valueArb = fc.oneof(fc.string({ unit: fc.constantFrom(..."abc 0129,;=\t\"'/é"), maxLength: 16 }), fc.constantFrom("trailers", "close", "keep-alive", "gzip, trailers", "1.0 other"));

/** A Connection value naming some of the fields (and tokens of its own). */
const connectionArb = fc.array(fc.oneof(nameArb, fc.constantFrom("close", "keep-alive", "Upgrade", " X-A ")), { maxLength: 4 }).map((l) => l.join(", "));

function exchangeFor(headers: Headers, trusted: boolean): Exchange {
  return {
    req: new Request("http://h/", { headers }),
    peerTrusted: trusted,
    peer: "192.0.2.1",
    tls: false,
    hostHeader: "h",
    requestId: "rid",
  } as unknown as Exchange;
}
const route = { reqRemove: [], reqSet: [] } as unknown as CompiledRoute;

test(`upstream request fields: end-to-end kept, hop-by-hop and aliases dropped, Hecate's set once (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(nameArb, valueArb), { maxLength: 10 }), fc.option(connectionArb, { nil: undefined }), fc.boolean(), fc.boolean(), (fields, conn, trusted, dropAuth) => {
      const h = new Headers();
      for (const [n, v] of fields) {
        try {
          h.append(n, v);
        } catch {
          // not a field a client could send
        }
      }
      if (conn !== undefined) h.set("connection", conn);
      const listed = new Set((h.get("connection") ?? "").split(",").map((t) => t.trim().toLowerCase()).filter((t) => t !== ""));
      const out = upstreamRequestHeaders(exchangeFor(h, trusted), route, dropAuth);
      expect(out.length % 2).toBe(0);
      const names = out.filter((_, i) => i % 2 === 0);
      const sent = new Map<string, string[]>();
      for (let i = 0; i < out.length; i += 2) sent.set(out[i]!, [...(sent.get(out[i]!) ?? []), out[i + 1]!]);
      for (const n of names) {
        expect(n).toMatch(TOKEN);
        if (n === "te") continue; // checked below
        expect(HOP.includes(n)).toBe(false);
        expect(OTHER_DROPPED.includes(n)).toBe(false);
        // no underscore alias of a dropped, rewritten or framing field
        const dashed = n.replace(/_/g, "-");
        if (dashed !== n) expect([...HOP, ...SET_BY_HECATE, ...OTHER_DROPPED, "content-length"].includes(dashed)).toBe(false);
        if (listed.has(n) && !SET_BY_HECATE.includes(n)) throw new Error(`${n} is named by Connection but was forwarded`);
      }
      for (const n of SET_BY_HECATE) expect(sent.get(n)?.length).toBe(1);
      // TE: only "trailers", and only when the client asked for it
      if (sent.has("te")) expect(sent.get("te")).toEqual(["trailers"]);
      // every other field the client sent arrives unchanged
      for (const [n, v] of h) {
        const dashed = n.replace(/_/g, "-");
        const dropped =
          HOP.includes(n) || OTHER_DROPPED.includes(n) || SET_BY_HECATE.includes(n) || listed.has(n) || (dashed !== n && [...HOP, ...SET_BY_HECATE, ...OTHER_DROPPED, "content-length"].includes(dashed)) || (dropAuth && n === "authorization");
        if (!dropped) expect(sent.get(n)).toEqual([v]);
      }
      if (dropAuth) expect(sent.has("authorization")).toBe(false);
    }),
    { numRuns: RUNS },
  );
});

test(`response fields: hop-by-hop and Connection-named fields removed, the rest untouched (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(nameArb, valueArb), { maxLength: 10 }), fc.option(connectionArb, { nil: undefined }), (fields, conn) => {
      const h = new Headers();
      for (const [n, v] of fields) {
        try {
          h.append(n, v);
        } catch {}
      }
      if (conn !== undefined) h.set("connection", conn);
      const listed = new Set((h.get("connection") ?? "").split(",").map((t) => t.trim().toLowerCase()).filter((t) => t !== "" && t !== "close" && t !== "keep-alive"));
      const before = [...h];
      stripResponseHopHeaders(h);
      for (const [n] of h) {
        expect(HOP.includes(n)).toBe(false);
        expect(listed.has(n)).toBe(false);
      }
      for (const [n, v] of before) if (!HOP.includes(n) && !listed.has(n)) expect(h.get(n)).toBe(v);
    }),
    { numRuns: RUNS },
  );
});

test(`response fields from the h1 parser: endToEndHeaders = all fields minus hop-by-hop ones, and decorating by appends (no Via/X-Request-Id/X-Retry-Attempt seen) = decorating by set (${RUNS} runs)`, () => {
  const decorNames = fc.constantFrom("via", "Via", "VIA", "x-request-id", "X-Request-Id", "x-retry-attempt", "X-Retry-Attempt");
  const caseMix = (n: string, k: number) => (k % 3 === 0 ? n : k % 3 === 1 ? n.toUpperCase() : n[0]!.toUpperCase() + n.slice(1));
  const fieldArb = fc.tuple(fc.oneof(nameArb, decorNames), fc.nat(), valueArb);
  const route = { respRemove: [], respSet: [] } as unknown as CompiledRoute;
  const ex = { requestId: "rid" } as unknown as Exchange;
  fc.assert(
    fc.property(fc.array(fieldArb, { maxLength: 10 }), fc.option(connectionArb, { nil: undefined }), fc.nat(3), (fields, conn, attempt) => {
      const flat: string[] = [];
      for (const [n, k, v] of fields) {
        try {
          new Headers([[n, v]]);
        } catch {
          continue; // not a field an HTTP/1.1 head can carry (the parser rejects such heads)
        }
        flat.push(caseMix(n, k), v);
      }
      if (conn !== undefined) flat.push("Connection", conn);
      const ref = new Headers();
      for (let i = 0; i < flat.length; i += 2) ref.append(flat[i]!, flat[i + 1]!);
      stripResponseHopHeaders(ref);
      const a = endToEndHeaders(flat);
      const undecorated = endToEndScan.undecorated;
      expect([...a]).toEqual([...ref]);
      const lower = flat.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      expect(undecorated).toBe(!lower.some((n) => n === "via" || n === "x-request-id" || n === "x-retry-attempt"));
      decorateResponseHeaders(a, ex, route, attempt, undecorated);
      decorateResponseHeaders(ref, ex, route, attempt, false);
      expect([...a]).toEqual([...ref]);
    }),
    { numRuns: RUNS },
  );
});

test(`X-Request-Id: a well-formed id is kept, anything else replaced by a fresh one (${RUNS} runs)`, () => {
  const ID = /^[A-Za-z0-9._~:+/=-]{1,128}$/;
  fc.assert(
    fc.property(fc.option(fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~:+/=-]{1,140}$/), fc.string({ maxLength: 40 })), { nil: undefined }), (id) => {
      const h = new Headers();
      try {
        if (id !== undefined) h.set("x-request-id", id);
      } catch {
        return;
      }
      const got = requestIdOf(requestFields(new Request("http://h/", { headers: h })));
      expect(got).toMatch(ID);
      const sent = h.get("x-request-id");
      if (sent !== null && ID.test(sent)) expect(got).toBe(sent);
      else expect(got).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }),
    { numRuns: RUNS },
  );
});
